"""The rate gate's decisions, on a fake clock: pacing, cuts, probing, headers, outages."""

from __future__ import annotations

import asyncio

import pytest
from _clock import FakeClock
from multidict import CIMultiDict

from finetune_ops import JobManager, RateChanged, RateGate
from finetune_ops._gate import Ticket

NO_HEADERS: CIMultiDict[str] = CIMultiDict()


def gate_on(clock: FakeClock, ceiling: float | None = None) -> RateGate:
    return RateGate(ceiling, clock=clock, sleep=clock.sleep)


def hint(seconds: float) -> CIMultiDict[str]:
    return CIMultiDict({"Retry-After": str(seconds)})


def budget(*, remaining: int, reset: float) -> CIMultiDict[str]:
    return CIMultiDict({"x-ratelimit-remaining": str(remaining), "x-ratelimit-reset": str(reset)})


async def send(gate: RateGate, clock: FakeClock, n: int, *, spacing: float) -> list[Ticket]:
    """``n`` requests, ``spacing`` seconds apart, none answered yet."""
    tickets = []
    for _ in range(n):
        tickets.append(await gate.acquire())
        clock.now += spacing
    return tickets


async def test_unpaced_until_throttled() -> None:
    """With no ceiling and no throttling, nothing ever waits."""
    clock = FakeClock()
    gate = gate_on(clock)
    for ticket in await send(gate, clock, 50, spacing=0):
        gate.answered(ticket, 200, NO_HEADERS)
    assert clock.sleeps == []
    assert gate.rate is None


async def test_the_ceiling_paces_smoothly_without_a_burst() -> None:
    """At 10/s requests leave 0.1 s apart, and a quiet spell saves up no burst."""
    clock = FakeClock()
    gate = gate_on(clock, ceiling=10)
    starts = []
    for _ in range(3):
        await gate.acquire()
        starts.append(round(clock.now - 1000.0, 6))
    clock.now += 5.0  # quiet
    for _ in range(3):
        await gate.acquire()
        starts.append(round(clock.now - 1000.0, 6))
    assert starts == [0.0, 0.1, 0.2, 5.2, 5.3, 5.4]


async def test_a_stray_429_delays_nobody_else() -> None:
    """A few 429s among many answers neither pause the others nor cut the rate."""
    clock = FakeClock()
    gate = gate_on(clock)
    for number, ticket in enumerate(await send(gate, clock, 400, spacing=0.001)):
        throttled = number % 20 == 0  # 5 % random-looking 429s, each with a long hint
        gate.answered(ticket, 429 if throttled else 200, hint(1.0) if throttled else NO_HEADERS)
    assert gate.paused_for == 0.0
    assert gate.rate is None
    assert clock.sleeps == []


async def test_clustered_429s_cut_once_per_round_trip() -> None:
    """Many 429s to requests sent at one rate cut it once, to 0.7 of the rate sent."""
    clock = FakeClock()
    gate = gate_on(clock)
    tickets = await send(gate, clock, 100, spacing=0.01)  # 100 requests/s
    for ticket in tickets:
        gate.answered(ticket, 429, hint(0.2))
    assert gate.rate == pytest.approx(70.0)
    assert gate.paused_for == pytest.approx(0.2)  # everyone waits the account's hint out
    assert gate.reason == "the account is throttling (429s cluster)"
    # Answers to requests sent at the new rate may cut it again.
    clock.now += 0.2
    later = await send(gate, clock, 10, spacing=0)
    for ticket in later:
        gate.answered(ticket, 429, NO_HEADERS)
    assert gate.rate == pytest.approx(0.7 * 70.0)


async def test_the_rate_probes_back_up() -> None:
    """After a cut the rate climbs back: fast far below the old limit, careful near it."""
    clock = FakeClock()
    gate = gate_on(clock)
    for ticket in await send(gate, clock, 100, spacing=0.01):
        gate.answered(ticket, 429, NO_HEADERS)
    assert gate.rate == pytest.approx(70.0)
    rates = []
    for _ in range(4):
        clock.now += 0.5
        for ticket in await send(gate, clock, 1, spacing=0):
            gate.answered(ticket, 200, NO_HEADERS)
        rates.append(gate.rate)
    assert rates == sorted(rates)
    assert rates[0] == pytest.approx(85.0)  # half the gap to 100
    assert rates[-1] is not None
    assert rates[-1] <= 100.0 * 1.1


async def test_growth_is_capped_by_what_is_sent() -> None:
    """A rate nobody uses is not credited: it stays within twice the rate really sent."""
    clock = FakeClock()
    gate = gate_on(clock)
    for ticket in await send(gate, clock, 100, spacing=0.01):
        gate.answered(ticket, 429, NO_HEADERS)
    rates = []
    for _ in range(40):  # one request every half second: 2 requests/s sent
        clock.now += 0.5
        for ticket in await send(gate, clock, 1, spacing=0):
            gate.answered(ticket, 200, NO_HEADERS)
        rates.append(gate.rate)
    assert rates[-1] == rates[2]  # after the sends of the cut have aged out, no more growth


async def test_headers_pace_before_any_429() -> None:
    """x-ratelimit-remaining over x-ratelimit-reset sets the pace; none left waits the reset."""
    clock = FakeClock()
    gate = gate_on(clock)
    [ticket] = await send(gate, clock, 1, spacing=0)
    gate.answered(
        ticket, 200, CIMultiDict({"x-ratelimit-remaining": "5", "x-ratelimit-reset": "1"})
    )
    assert gate.rate == pytest.approx(5.0)
    assert gate.reason == "pacing by the x-ratelimit headers"
    [ticket] = await send(gate, clock, 1, spacing=0)
    gate.answered(
        ticket, 200, CIMultiDict({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"})
    )
    assert gate.paused_for == pytest.approx(2.0)
    await gate.acquire()
    assert clock.sleeps[0] == pytest.approx(2.0)


async def test_503s_never_cut_the_rate() -> None:
    """Capacity short is not the account's limit: 503s leave the rate alone."""
    clock = FakeClock()
    gate = gate_on(clock)
    for number, ticket in enumerate(await send(gate, clock, 100, spacing=0.01)):
        gate.answered(ticket, 503 if number % 2 else 200, hint(1.0))
    assert gate.rate is None
    assert gate.paused_for == 0.0
    assert not gate.in_outage


async def test_an_outage_is_met_with_a_few_probes() -> None:
    """Ten failures in a row: one probe at a time, four a second; the first answer ends it."""
    clock = FakeClock()
    gate = gate_on(clock)
    for ticket in await send(gate, clock, 10, spacing=0):
        gate.failed(ticket)
    assert gate.in_outage
    started = clock.now
    probes = []
    for _ in range(8):
        ticket = await gate.acquire()
        assert ticket.probe
        probes.append(clock.now - started)
        gate.failed(ticket)
    assert len(probes) / (probes[-1] - probes[0] + 0.25) <= 4.0
    ticket = await gate.acquire()
    gate.answered(ticket, 200, NO_HEADERS)
    assert not gate.in_outage
    assert gate.reason == "the API answers again"
    waits = len(clock.sleeps)
    await send(gate, clock, 20, spacing=0)
    assert len(clock.sleeps) == waits  # full speed at once


async def test_only_one_probe_is_out_at_a_time() -> None:
    """While a probe is unanswered, no other request goes, however long it takes."""
    clock = FakeClock()
    gate = gate_on(clock)
    for ticket in await send(gate, clock, 10, spacing=0):
        gate.failed(ticket)
    probe = await gate.acquire()
    assert probe.probe
    gate.released(probe)  # cancelled without an outcome: the next may probe
    again = await gate.acquire()
    assert again.probe


async def test_a_request_still_waiting_for_its_slot_is_not_in_flight() -> None:
    """Only sent requests spend the headers' budget; a cancelled wait leaves no trace."""
    clock = FakeClock()

    async def forever(seconds: float) -> None:
        await asyncio.Event().wait()

    gate = RateGate(10.0, clock=clock, sleep=forever)
    sent = await gate.acquire()
    waiting = [asyncio.create_task(gate.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    gate.answered(sent, 200, budget(remaining=8, reset=1))
    assert gate.rate == pytest.approx(8.0)  # 8 left in 1 s, nothing else in flight


async def test_in_an_outage_retries_wait_for_the_api_not_their_backoff() -> None:
    """Backoffs under way end when an outage starts; in one, a retry goes to the gate at once."""
    clock = FakeClock()
    gate = gate_on(clock)

    async def forever(seconds: float) -> None:
        await asyncio.Event().wait()

    tickets = await send(gate, clock, 10, spacing=0)
    backoffs = [asyncio.create_task(gate.backoff(600.0, forever)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in backoffs)
    for ticket in tickets:
        gate.failed(ticket)
    assert gate.in_outage
    await asyncio.wait_for(asyncio.gather(*backoffs), timeout=5)
    await asyncio.wait_for(gate.backoff(600.0, forever), timeout=5)


async def test_changes_are_kept_for_listeners() -> None:
    """Each decision is a RateChanged that listeners read in order."""
    clock = FakeClock()
    gate = gate_on(clock)
    seen = gate.change_count
    for ticket in await send(gate, clock, 100, spacing=0.01):
        gate.answered(ticket, 429, NO_HEADERS)
    changes, seen = gate.changes_after(seen)
    assert changes == [RateChanged(rate=pytest.approx(70.0), reason=gate.reason)]
    assert gate.changes_after(seen) == ([], seen)


async def test_managers_share_one_gate() -> None:
    """Two managers on one key can pace together through one gate; the ceiling lives on it."""
    gate = RateGate(50)
    first = JobManager(base_url="http://127.0.0.1:9/v1", rate_gate=gate)
    second = JobManager(base_url="http://127.0.0.1:9/v1", rate_gate=gate)
    try:
        assert first.rate_gate is second.rate_gate is gate
        assert gate.rate == 50
        with pytest.raises(ValueError, match="shared RateGate"):
            JobManager(rate_gate=gate, max_requests_per_second=10)
    finally:
        await first.aclose()
        await second.aclose()


def test_bad_ceilings_are_refused() -> None:
    """A ceiling must be a positive finite number."""
    for rate in (0, -1, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="max_requests_per_second"):
            RateGate(rate)
