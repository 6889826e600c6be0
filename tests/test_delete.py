"""Clean up: deleting jobs in bulk with the batch semantics of cancel_many, and checkpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from finetune_ops import (
    ActiveJobError,
    FineTuneCheckpoint,
    InvalidJobIdError,
    JobManager,
    NotFoundError,
    PollPolicy,
    WaitTimeoutError,
)
from finetune_ops.testing import NO_WAIT_RETRY, FaultKind, FaultPlan, Lifecycle, Simulator

FAST = {
    "retry": NO_WAIT_RETRY,
    "poll": PollPolicy(interval=0.01, growth=1.0, jitter=0),
}


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(lifecycle=Lifecycle(cancel_delay=0.02))
    async with simulator.serve():
        yield simulator


@pytest_asyncio.fixture
async def jobs(sim: Simulator) -> AsyncIterator[JobManager]:
    async with JobManager(base_url=sim.base_url, **FAST) as manager:
        yield manager


async def test_delete_many_deletes_what_has_ended(sim: Simulator, jobs: JobManager) -> None:
    """Ended jobs are deleted; active ones are refused and left alone; one result per id."""
    ended = sim.add_jobs(12, statuses=("cancelled", "completed", "error", "user_error"))
    active = sim.add_jobs(3, statuses=("running",))
    report = await jobs.delete_many([*ended, *active, "ft-unknown", "ft-a/b", ended[0]])
    by_id = {result.job_id: result for result in report}
    assert [r.job_id for r in report] == [*ended, *active, "ft-unknown", "ft-a/b"]
    assert all(by_id[job_id].ok and by_id[job_id].deleted for job_id in ended)
    for job_id in active:
        assert isinstance(by_id[job_id].error, ActiveJobError)
        assert not by_id[job_id].deleted
        assert sim.status(job_id) == "running"
    assert isinstance(by_id["ft-unknown"].error, NotFoundError)
    assert isinstance(by_id["ft-a/b"].error, InvalidJobIdError)
    assert sorted(sim.job_ids()) == sorted(active)
    assert sim.counters["cancel"] == 0


async def test_cancel_first_cancels_waits_and_deletes(sim: Simulator, jobs: JobManager) -> None:
    """With cancel_first, an active job is cancelled, waited for until terminal, then deleted."""
    active = sim.add_jobs(20, statuses=("running", "queued"))
    done = sim.add_job("completed")
    report = await jobs.delete_many([*active, done], cancel_first=True, timeout=30)
    assert report.all_ok
    assert all(result.deleted for result in report)
    assert all(result.cancel_sent for result in report if result.job_id != done)
    assert {str(result.status) for result in report} == {"cancelled", "completed"}
    assert sim.job_ids() == []


async def test_delete_one(sim: Simulator, jobs: JobManager) -> None:
    """delete() returns the last record of the job it deleted, and raises what stopped it."""
    job_id = sim.add_job("cancelled")
    job = await jobs.delete(job_id)
    assert job.status == "cancelled"
    assert sim.job_ids() == []
    running = sim.add_job("running")
    with pytest.raises(ActiveJobError, match="cancel_first") as info:
        await jobs.delete(running)
    assert info.value.job is not None
    assert info.value.job.status == "running"
    assert (await jobs.delete(running, cancel_first=True, timeout=30)).status == "cancelled"


async def test_delete_iter_yields_as_jobs_go(sim: Simulator, jobs: JobManager) -> None:
    """delete_iter hands over each result as soon as its job is deleted."""
    ids = sim.add_jobs(10, statuses=("completed",))
    seen = [result async for result in jobs.delete_iter(ids)]
    assert sorted(result.job_id for result in seen) == sorted(ids)
    assert all(result.deleted for result in seen)


async def test_deleting_survives_faults() -> None:
    """Under faults on every endpoint, each job still gets one truthful result."""
    sim = Simulator(
        faults=FaultPlan(rate=0.2, kinds=(FaultKind.SERVER_ERROR_500, FaultKind.RESET), seed=5)
    )
    ids = sim.add_jobs(30, statuses=("completed",))
    async with sim.serve() as url, JobManager(base_url=url, **FAST) as jobs:
        report = await jobs.delete_many(ids)
    gone = set(ids) - set(sim.job_ids())
    for result in report:
        if result.deleted:
            assert result.job_id in gone  # never "deleted" for a job still there
    assert len(report) == 30


async def test_a_deadline_bounds_a_delete(sim: Simulator, jobs: JobManager) -> None:
    """A job still cancelling at the deadline is reported as not deleted yet."""
    slow = Simulator(lifecycle=Lifecycle(cancel_delay=60))
    job_id = slow.add_job("running")
    async with slow.serve() as url, JobManager(base_url=url, **FAST) as manager:
        report = await manager.delete_many([job_id], cancel_first=True, timeout=0.3)
    [result] = report.results
    assert isinstance(result.error, WaitTimeoutError)
    assert result.cancel_sent
    assert not result.deleted
    assert slow.job_ids() == [job_id]


async def test_checkpoints_are_typed_records(sim: Simulator, jobs: JobManager) -> None:
    """A finished job's checkpoints come back as records, oldest first, with the final model."""
    job_id = sim.add_job("completed", n_checkpoints=3)
    checkpoints = await jobs.checkpoints(job_id)
    assert checkpoints
    assert all(isinstance(c, FineTuneCheckpoint) for c in checkpoints)
    steps = [c.step for c in checkpoints]
    assert steps == sorted(steps)
    assert checkpoints[-1].checkpoint_type == "Final"
    assert checkpoints[-1].created_at is not None
    with pytest.raises(NotFoundError):
        await jobs.checkpoints("ft-unknown")
