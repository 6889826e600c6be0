"""A batch's state as plain data: it round-trips through JSON, and a batch resumes from it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_ops import (
    BatchState,
    CancelAccepted,
    Event,
    JobManager,
    NotFoundError,
    PollPolicy,
    WaitTimeoutError,
)
from finetune_ops.testing import NO_WAIT_RETRY, Lifecycle, ManualClock, Simulator

FAST = {
    "retry": NO_WAIT_RETRY,
    "poll": PollPolicy(interval=0.01, growth=1.0, jitter=0),
}

IDS = st.text("abcdef0123456789-_", min_size=1, max_size=12).map(lambda s: f"ft-{s}")
ERRORS = st.none() | st.fixed_dictionaries(
    {
        "type": st.sampled_from(["NotFoundError", "WaitTimeoutError", "APIConnectionError"]),
        "message": st.text(max_size=30),
        "status_code": st.none() | st.integers(100, 599),
    }
)
RESULTS = st.none() | st.fixed_dictionaries(
    {
        "ok": st.booleans(),
        "status": st.none() | st.sampled_from(["cancelled", "completed", "running", "paused"]),
        "cancel_sent": st.booleans(),
        "attempts": st.integers(0, 50),
        "error": ERRORS,
    }
)
JOBS = st.fixed_dictionaries(
    {
        "status": st.none() | st.text(max_size=20),
        "cancel_accepted": st.booleans(),
        "result": RESULTS,
    }
)
DEADLINES = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


#: Drawing nested dictionaries is slow on a loaded machine; the examples are not.
SLOW_DRAWS = settings(suppress_health_check=[HealthCheck.too_slow])


@SLOW_DRAWS
@given(jobs=st.dictionaries(IDS, JOBS, max_size=20), deadline=DEADLINES)
def test_any_state_round_trips_through_json(
    jobs: dict[str, dict[str, object]], deadline: datetime | None
) -> None:
    """to_json, json.dumps, json.loads and from_json give back the same state."""
    data = {
        "format": "finetune-ops/batch",
        "version": 1,
        "deadline": None if deadline is None else deadline.isoformat().replace("+00:00", "Z"),
        "jobs": jobs,
    }
    state = BatchState.from_json(data)
    again = BatchState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    assert again.to_json() == state.to_json()
    assert list(again.jobs) == list(jobs)


@SLOW_DRAWS
@given(
    jobs=st.dictionaries(IDS, JOBS, max_size=20),
    split=st.lists(st.sampled_from(["status", "cancel_accepted", "result"]), unique=True),
)
def test_any_state_written_as_journal_lines_folds_back(
    jobs: dict[str, dict[str, object]], split: list[str]
) -> None:
    """A state written as change lines (each job's fields spread over lines) folds back to it."""
    state = BatchState.from_json({"format": "finetune-ops/batch", "version": 1, "jobs": jobs})
    lines = []
    for job_id, job in state.to_json()["jobs"].items():
        rest = {key: value for key, value in job.items() if key not in split}
        lines += [{"id": job_id, key: job[key]} for key in split]
        lines.append({"id": job_id, **rest})
    folded = BatchState()
    for line in json.loads(json.dumps(lines)):
        folded.apply(line)
    assert folded == state


def test_apply_keeps_an_accepted_cancel_and_refuses_a_bad_line() -> None:
    """A later line never takes back an accepted cancel; a malformed line is a ValueError."""
    state = BatchState(["ft-a"])
    state.apply({"id": "ft-a", "cancel_accepted": True, "status": "cancel_requested"})
    state.apply({"id": "ft-a", "cancel_accepted": False, "status": "running"})
    assert state.jobs["ft-a"].cancel_accepted
    assert state.jobs["ft-a"].status == "running"
    bad_results = [
        {"status": "x"},
        {"ok": True, "attempts": "2"},
        {"ok": True, "status": 5},
        {"ok": False, "error": "boom"},
    ]
    lines = [{"status": "x"}, {"id": 3}, *({"id": "ft-a", "result": r} for r in bad_results)]
    for line in lines:
        with pytest.raises(ValueError, match=r"id|result"):
            state.apply(line)
    assert state.jobs["ft-a"].result is None


def test_reopen_forgets_failed_and_optionally_unended_results() -> None:
    """reopen clears failed results (and, asked, those of jobs not ended); accepted stays."""
    ok = {"ok": True, "cancel_sent": True, "attempts": 1, "error": None}
    failed = {**ok, "ok": False, "status": None, "error": {"type": "E", "message": "m"}}
    state = BatchState.from_json(
        {
            "format": "finetune-ops/batch",
            "version": 1,
            "jobs": {
                "ft-done": {"cancel_accepted": True, "result": {**ok, "status": "cancelled"}},
                "ft-asked": {
                    "cancel_accepted": True,
                    "result": {**ok, "status": "cancel_requested"},
                },
                "ft-failed": {"cancel_accepted": False, "result": failed},
            },
        }
    )
    assert state.reopen() == ["ft-failed"]
    assert state.pending == ["ft-failed"]
    assert state.reopen(unended=True) == ["ft-asked"]
    assert state.finished == ["ft-done"]
    assert state.jobs["ft-asked"].cancel_accepted
    part = state.subset(state.pending)
    assert list(part.jobs) == ["ft-asked", "ft-failed"]
    assert part.jobs["ft-asked"] is state.jobs["ft-asked"]  # one progress, kept current by both


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"format": "finetune-ops/batch", "version": 2, "deadline": None, "jobs": {}},
        {"format": "other", "version": 1, "deadline": None, "jobs": {}},
        {"format": "finetune-ops/batch", "version": 1, "deadline": 5, "jobs": {}},
        {"format": "finetune-ops/batch", "version": 1, "deadline": None, "jobs": []},
        {"format": "finetune-ops/batch", "version": 1, "deadline": None, "jobs": {"ft-a": 1}},
        {
            "format": "finetune-ops/batch",
            "version": 1,
            "deadline": None,
            "jobs": {"ft-a": {"status": None, "cancel_accepted": "yes", "result": None}},
        },
    ],
)
def test_anything_else_is_refused(data: dict[str, object]) -> None:
    """Another format, another version or a malformed state is a clear ValueError."""
    with pytest.raises(ValueError, match="state"):
        BatchState.from_json(data)


def test_a_deadline_is_fixed_once() -> None:
    """timeout= sets an absolute UTC deadline; a naive one and both at once are refused."""
    state = BatchState(["ft-a"], timeout=60)
    assert state.deadline is not None
    assert state.deadline.tzinfo is not None
    assert 59 < (state.seconds_left() or 0) <= 60
    with pytest.raises(ValueError, match="aware"):
        BatchState(["ft-a"], deadline=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="not both"):
        BatchState(["ft-a"], timeout=1, deadline=datetime.now(UTC))


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(clock=ManualClock())
    async with simulator.serve():
        yield simulator


async def test_a_resumed_batch_sends_no_second_cancel() -> None:
    """Stopped after some cancels were accepted, a batch started from its state re-sends none."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0.05))
    ids = sim.add_jobs(40)
    state = BatchState(ids, timeout=600)
    accepted: list[str] = []

    def heard(event: Event) -> None:
        if isinstance(event, CancelAccepted):
            accepted.append(event.job_id)

    async with (
        sim.serve() as url,
        JobManager(base_url=url, max_concurrency=2, on_event=heard, **FAST) as jobs,
    ):
        task = asyncio.create_task(jobs.cancel_many(state=state, wait=True))
        while len(accepted) < 10:  # noqa: ASYNC110 - the events come from the batch's tasks
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    saved = json.dumps(state.to_json())
    assert sum(job["cancel_accepted"] for job in json.loads(saved)["jobs"].values()) >= 10

    resumed = BatchState.from_json(json.loads(saved))
    already = {job_id for job_id, job in resumed.jobs.items() if job.cancel_accepted}
    sim.reset_counters()
    async with sim.serve() as url, JobManager(base_url=url, **FAST) as jobs:
        report = await jobs.cancel_many(state=resumed, wait=True)
    assert report.by_status == {"cancelled": 40}
    assert sim.counters["cancel"] == 40 - len(already)
    # A cancel in flight when the batch stopped may have landed unheard: sent again,
    # it meets a job already ended. Every cancel heard as accepted still counts as sent.
    assert all(result.cancel_sent for result in report if result.job_id in already)
    assert resumed.pending == []


async def test_finished_jobs_are_skipped(sim: Simulator) -> None:
    """Jobs with a result in the state come back as they were, without a request."""
    ids = sim.add_jobs(3)
    state = BatchState([*ids, "ft-gone"], timeout=600)
    async with JobManager(base_url=sim.base_url, **FAST) as jobs:
        first = await jobs.cancel_many(state=state)
        requests = sim.total_requests
        again = await jobs.cancel_many(state=BatchState.from_json(state.to_json()))
    assert sim.total_requests == requests
    assert [r.status for r in again] == [r.status for r in first]
    assert isinstance(again.results[-1].error, NotFoundError)
    assert again.by_outcome == first.by_outcome


async def test_the_deadline_is_kept(sim: Simulator) -> None:
    """A state whose deadline has passed ends every pending job at once, sending nothing."""
    ids = sim.add_jobs(5)
    state = BatchState(ids, deadline=datetime.now(UTC) - timedelta(seconds=1))
    async with JobManager(base_url=sim.base_url, **FAST) as jobs:
        report = await jobs.wait_many(state=state)
        with pytest.raises(ValueError, match="deadline"):
            await jobs.wait_many(state=state, timeout=5)
        with pytest.raises(ValueError, match="differ"):
            await jobs.wait_many(["ft-other"], state=state)
    assert report.by_error == {"WaitTimeoutError": 5}
    assert sim.total_requests == 0


async def test_wait_iter_yields_without_cancelling() -> None:
    """wait_iter hands each result over as its job ends, and sends no cancel."""
    sim = Simulator(
        lifecycle=Lifecycle(pending=0, queued=0, running=0.02, compressing=0, uploading=0)
    )
    async with sim.serve() as url, JobManager(base_url=url, **FAST) as jobs:
        ids = sim.add_jobs(12, statuses=("running",))
        seen = [result async for result in jobs.wait_iter(ids, timeout=30)]
    assert sorted(r.job_id for r in seen) == sorted(ids)
    assert {r.status for r in seen} == {"completed"}
    assert sim.counters["cancel"] == 0


async def test_poll_once_looks_at_each_job_once(sim: Simulator) -> None:
    """Many ids: one list request, a GET only for those it lacks; few ids: a GET each."""
    ids = sim.add_jobs(20)
    async with JobManager(base_url=sim.base_url, **FAST) as jobs:
        looks = await jobs.poll_once([*ids, "ft-missing"])
        assert sim.counters["list"] == 1
        assert sim.counters["retrieve"] == 1
        assert list(looks) == [*ids, "ft-missing"]
        assert isinstance(looks["ft-missing"], NotFoundError)
        few = await jobs.poll_once(ids[:2])
    assert sim.counters["list"] == 1
    assert sim.counters["retrieve"] == 3
    assert all(not isinstance(job, Exception) for job in few.values())


async def test_a_state_times_out_truthfully(sim: Simulator) -> None:
    """A wait that runs out of time records no result as final success."""
    ids = sim.add_jobs(2, statuses=("running",))
    state = BatchState(ids, timeout=0.3)
    async with JobManager(base_url=sim.base_url, **FAST) as jobs:
        report = await jobs.wait_many(state=state)
    assert report.by_error == {"WaitTimeoutError": 2}
    for job_id in ids:
        result = state.result(job_id)
        assert result is not None
        assert isinstance(result.error, WaitTimeoutError)
        assert state.jobs[job_id].status == "running"
