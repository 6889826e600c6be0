"""FineTuneJobsTrigger: serialization, a wait to the end, to the deadline, across a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import KEY

from finetune_ops import BatchState, JobManager
from finetune_ops.airflow import FineTuneJobsTrigger
from finetune_ops.airflow._compat import BaseTrigger
from finetune_ops.airflow._trigger import poll_policy
from finetune_ops.testing import Simulator

FAST = 0.01


async def until(check: Callable[[], bool]) -> None:
    """Let the trigger run until ``check()`` holds (an event order, not a time)."""
    for _ in range(50_000):
        if check():
            return
        await asyncio.sleep(FAST)
    raise AssertionError("never happened")


def rebuilt(trigger: FineTuneJobsTrigger) -> FineTuneJobsTrigger:
    """What a triggerer does with a stored trigger: the class path and the kwargs, via JSON."""
    path, kwargs = trigger.serialize()
    assert path == "finetune_ops.airflow.FineTuneJobsTrigger"
    module, _, name = path.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    rebuilt_trigger: FineTuneJobsTrigger = cls(**json.loads(json.dumps(kwargs)))
    return rebuilt_trigger


async def first_event(trigger: FineTuneJobsTrigger) -> dict[str, Any]:
    events: AsyncIterator[Any] = trigger.run()
    event = await anext(events)
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    payload: dict[str, Any] = event.payload
    return payload


def test_serialize_round_trips_without_the_key() -> None:
    state = BatchState(["ft-a", "ft-b"], timeout=60)
    trigger = FineTuneJobsTrigger(
        conn_id="together_x", state=state.to_json(), poll_interval=5.0, cancel_on_kill=True
    )
    again = rebuilt(trigger)
    assert again.serialize() == trigger.serialize()
    assert BatchState.from_json(again.state) == state
    assert (again.conn_id, again.poll_interval, again.cancel_on_kill) == ("together_x", 5.0, True)
    assert KEY not in json.dumps(trigger.serialize())


def test_a_bad_state_fails_when_deferring() -> None:
    with pytest.raises(ValueError, match="batch state"):
        FineTuneJobsTrigger(state={"jobs": {}})
    with pytest.raises(ValueError, match="poll_interval"):
        FineTuneJobsTrigger(state=BatchState(["ft-a"]).to_json(), poll_interval=0)


def test_poll_interval_is_the_pace_of_the_wait() -> None:
    policy = poll_policy(7.5)
    assert [policy.delay(tick) for tick in range(4)] == [7.5] * 4
    assert policy.timeout == float("inf")  # the state's deadline bounds the wait


async def test_run_to_completion(sim: Simulator) -> None:
    done = sim.add_job("completed")
    running = sim.add_job("running")
    trigger = FineTuneJobsTrigger(state=BatchState([done, running]).to_json(), poll_interval=FAST)
    task = asyncio.ensure_future(first_event(trigger))
    # Both looked at once, the running one still running.
    await until(lambda: sim.counters["retrieve"] >= 2)
    assert not task.done()
    sim.set_status(running, "completed")
    payload = await task
    assert payload["status"] == "success"
    assert {job_id: job["status"] for job_id, job in payload["jobs"].items()} == {
        done: "completed",
        running: "completed",
    }
    assert sim.counters["cancel"] == 0


async def test_run_to_the_deadline_leaves_the_job_running(sim: Simulator) -> None:
    running = sim.add_job("running")
    trigger = FineTuneJobsTrigger(
        state=BatchState([running], timeout=0.2).to_json(), poll_interval=FAST
    )
    payload = await first_event(trigger)
    assert payload["status"] == "timeout"
    assert payload["jobs"][running]["ok"] is False
    assert "WaitTimeoutError" in payload["jobs"][running]["error"]
    assert sim.status(running) == "running"
    assert sim.counters["cancel"] == 0


async def test_cancelled_error_ends_the_wait_and_cancels_nothing(sim: Simulator) -> None:
    running = sim.add_job("running")
    trigger = FineTuneJobsTrigger(
        state=BatchState([running]).to_json(), poll_interval=FAST, cancel_on_kill=True
    )
    task = asyncio.ensure_future(first_event(trigger))
    await until(lambda: sim.counters["retrieve"] >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sim.counters["cancel"] == 0
    assert sim.status(running) == "running"


async def test_restart_mid_wait_sends_no_second_cancel(sim: Simulator) -> None:
    """The cancel operator's path: cancels sent, then waited for; the triggerer restarts."""
    from finetune_ops.airflow._cancel_operator import awaiting

    ids = sim.add_jobs(3, ["running"])
    state = BatchState(ids, timeout=600)
    async with JobManager(api_key=KEY, base_url=sim.base_url) as jobs:
        await jobs.cancel_many(state=state)
    assert sim.counters["cancel"] == 3
    first = FineTuneJobsTrigger(state=awaiting(state).to_json(), poll_interval=FAST)
    assert first._state.pending == ids

    task = asyncio.ensure_future(first_event(first))
    sim.set_status(ids[0], "cancelled")  # one ends before the restart, two after
    await until(lambda: first._state.pending == ids[1:])
    moved = rebuilt(first)  # serialized mid-wait, as it would be handed on
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert moved._state.pending == ids[1:]
    assert moved._state.deadline == state.deadline
    assert all(moved._state.jobs[job_id].cancel_accepted for job_id in ids)

    sim.advance(1.0)  # cancel_requested -> cancelled
    payload = await first_event(moved)
    assert payload["status"] == "success"
    assert {job["status"] for job in payload["jobs"].values()} == {"cancelled"}
    assert sim.counters["cancel"] == 3  # none sent again
    assert sim.counters["retrieve"] >= 2  # the restarted wait looked only at the two left


async def test_an_unreachable_api_gives_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import CONN_ENV, connection

    monkeypatch.setenv(CONN_ENV, connection("http://127.0.0.1:9/v1"))
    trigger = FineTuneJobsTrigger(
        state=BatchState(["ft-a"], timeout=1).to_json(), poll_interval=FAST
    )
    payload = await first_event(trigger)
    assert payload["status"] in ("error", "timeout")
    assert payload["jobs"]["ft-a"]["ok"] is False


@pytest.mark.skipif(
    "on_kill" not in vars(BaseTrigger), reason="BaseTrigger.on_kill came with Airflow 3.3"
)
async def test_kill_hook_cancels_the_job_only_when_asked(sim: Simulator) -> None:
    keep, stop = sim.add_job("running"), sim.add_job("running")
    for job_id, flag in ((keep, False), (stop, True)):
        trigger = FineTuneJobsTrigger(
            state=BatchState([job_id]).to_json(), poll_interval=FAST, cancel_on_kill=flag
        )
        task = asyncio.ensure_future(first_event(trigger))
        looks = 2 if job_id == keep else 4
        await until(lambda looks=looks: sim.counters["retrieve"] >= looks)
        task.cancel("user-action")  # what the triggerer does before calling on_kill
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.on_kill()
    assert sim.status(keep) == "running"
    assert sim.status(stop) == "cancel_requested"
    assert sim.counters["cancel"] == 1
