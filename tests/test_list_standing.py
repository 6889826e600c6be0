"""When a poller may use the job list after it failed, decided against a real rate gate."""

from __future__ import annotations

from _clock import FakeClock

from finetune_ops import DEFAULT_RETRY
from finetune_ops._errors import FinetuneOpsError, status_error
from finetune_ops._gate import RateGate
from finetune_ops._list_standing import ListStanding, Verdict

BUSY = status_error(503, "busy")
GONE = status_error(404, "no list here")
SLOW = status_error(429, "slow down")


def _standing() -> tuple[ListStanding, RateGate]:
    clock = FakeClock()
    gate = RateGate(clock=clock, sleep=clock.sleep)
    return ListStanding(gate, DEFAULT_RETRY), gate


async def _answer(gate: RateGate, status: int = 200) -> None:
    gate.answered(await gate.acquire(), status, {})


def _fail(standing: ListStanding, error: FinetuneOpsError, times: int) -> list[Verdict]:
    return [standing.failed(error) for _ in range(times)]


async def test_three_failures_while_others_answer_set_the_list_aside() -> None:
    standing, gate = _standing()
    assert _fail(standing, BUSY, 2) == [Verdict.AGAIN, Verdict.AGAIN]
    await _answer(gate)  # a GET of some job answers meanwhile
    assert standing.failed(BUSY) is Verdict.SET_ASIDE
    assert [standing.usable() for _ in range(9)] == [False] * 8 + [True]


async def test_failures_with_nothing_else_answering_probe_first() -> None:
    standing, gate = _standing()
    assert _fail(standing, BUSY, 4) == [Verdict.AGAIN, Verdict.AGAIN, Verdict.PROBE, Verdict.PROBE]
    await _answer(gate)  # the probe's job answers: the list is what is broken
    assert standing.failed(BUSY) is Verdict.SET_ASIDE


async def test_what_cannot_change_sets_it_aside_at_once_and_longer_each_time() -> None:
    standing, _ = _standing()
    assert standing.failed(GONE) is Verdict.SET_ASIDE
    assert sum(not standing.usable() for _ in range(100)) == 8
    assert standing.failed(GONE) is Verdict.SET_ASIDE
    assert sum(not standing.usable() for _ in range(100)) == 16
    standing.answered()  # the list answers again: the next spell is short again
    assert standing.failed(GONE) is Verdict.SET_ASIDE
    assert sum(not standing.usable() for _ in range(100)) == 8


async def test_what_is_the_whole_apis_does_not_count() -> None:
    standing, gate = _standing()
    assert _fail(standing, SLOW, 5) == [Verdict.AGAIN] * 5  # asked to slow down
    for _ in range(10):
        gate.failed(await gate.acquire())  # the gate calls an outage
    assert gate.in_outage
    assert _fail(standing, BUSY, 5) == [Verdict.AGAIN] * 5
    assert standing.failures == 0


async def test_set_aside_in_an_outage_it_is_used_once_the_api_answers() -> None:
    standing, gate = _standing()
    standing.failed(BUSY)
    await _answer(gate)
    assert _fail(standing, BUSY, 2)[-1] is Verdict.SET_ASIDE  # just before the outage is called
    for _ in range(10):
        gate.failed(await gate.acquire())
    await _answer(gate)  # the outage ends
    assert standing.usable()
