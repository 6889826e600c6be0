"""JobManager over loopback against the simulator: single jobs, batches, events, closing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from finetune_ops import (
    AuthenticationError,
    BadRequestError,
    CancelReport,
    CancelResult,
    InvalidJobIdError,
    JobFinished,
    JobManager,
    JobStatus,
    NotFoundError,
    PollPolicy,
    RetryEvent,
    RetryPolicy,
    StatusChanged,
    WaitTimeoutError,
)
from finetune_ops.testing import FaultKind, Lifecycle, ManualClock, Simulator

FAST_RETRY = RetryPolicy(wait_initial=0, wait_max=0, wait_jitter=0)
FAST_POLL = PollPolicy(interval=0.01, growth=1.0, jitter=0)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator on the real clock whose cancels land after 20 ms."""
    simulator = Simulator(lifecycle=Lifecycle(cancel_delay=0.02))
    async with simulator.serve():
        yield simulator


@pytest_asyncio.fixture
async def jobs(sim: Simulator) -> AsyncIterator[JobManager]:
    async with JobManager(base_url=sim.base_url, retry=FAST_RETRY, poll=FAST_POLL) as manager:
        yield manager


# -- single jobs ----------------------------------------------------------------


async def test_cancel_returns_at_once(sim: Simulator, jobs: JobManager) -> None:
    """Without wait, cancel returns the job as the API left it: cancel requested."""
    job_id = sim.add_job("running")
    job = await jobs.cancel(job_id)
    assert job.id == job_id
    assert job.status == JobStatus.CANCEL_REQUESTED
    assert not job.status.is_terminal


async def test_cancel_and_wait(sim: Simulator, jobs: JobManager) -> None:
    """With wait, cancel returns once the job is cancelled."""
    job_id = sim.add_job("queued")
    job = await jobs.cancel(job_id, wait=True, timeout=30)
    assert job.status == JobStatus.CANCELLED
    assert sim.status(job_id) == "cancelled"


async def test_wait_for_completion() -> None:
    """wait returns a job that completes by itself, without cancelling it."""
    sim = Simulator(
        lifecycle=Lifecycle(pending=0, queued=0, running=0.03, compressing=0, uploading=0)
    )
    async with sim.serve() as url, JobManager(base_url=url, poll=FAST_POLL) as jobs:
        job_id = sim.add_job("running")
        job = await jobs.wait(job_id, timeout=30)
    assert job.status == JobStatus.COMPLETED
    assert sim.counters["cancel"] == 0


async def test_cancel_already_terminal(sim: Simulator, jobs: JobManager) -> None:
    """Cancelling a finished job is not an error: its current record comes back."""
    for status in ("completed", "cancelled", "error", "user_error"):
        job_id = sim.add_job(status)
        job = await jobs.cancel(job_id, wait=True)
        assert job.status == status
        assert job.status.is_terminal


async def test_cancel_unknown_raises(jobs: JobManager) -> None:
    """An unknown id raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await jobs.cancel("ft-00000000-0000-0000-0000-000000000000")


async def test_cancel_invalid_raises_before_sending(sim: Simulator, jobs: JobManager) -> None:
    """An invalid id raises InvalidJobIdError and sends nothing."""
    with pytest.raises(InvalidJobIdError):
        await jobs.cancel("ft-../../admin")
    assert sim.total_requests == 0


async def test_wait_timeout_carries_last_record(sim: Simulator, jobs: JobManager) -> None:
    """A job not terminal in time raises WaitTimeoutError with the last record seen."""
    job_id = sim.add_job("running")
    with pytest.raises(WaitTimeoutError) as info:
        await jobs.wait(job_id, timeout=0.5)  # the first look is at once: ample time
    assert isinstance(info.value, TimeoutError)
    assert info.value.job_id == job_id
    assert info.value.job is not None
    assert info.value.job.status == "running"


async def test_retrieve_list_events(sim: Simulator, jobs: JobManager) -> None:
    """The one-shot calls pass through to the API."""
    job_id = sim.add_job("running")
    assert (await jobs.retrieve(job_id)).id == job_id
    assert [job.id for job in await jobs.list()] == [job_id]
    assert await jobs.events(job_id)


# -- batches --------------------------------------------------------------------


async def test_cancel_many_mixed_batch(sim: Simulator, jobs: JobManager) -> None:
    """Each id gets one result in input order: cancelled, already ended, unknown, invalid."""
    running = sim.add_jobs(20)
    done = sim.add_job("completed")
    unknown = "ft-11111111-1111-1111-1111-111111111111"
    ids = [*running, done, unknown, "ft-a/b", running[0], 42]
    report = await jobs.cancel_many(ids, wait=True, timeout=30)  # type: ignore[list-item]
    assert [r.job_id for r in report.results] == [*running, done, unknown, "ft-a/b", "42"]
    by_id = {r.job_id: r for r in report}
    assert all(by_id[i].ok and by_id[i].status == "cancelled" for i in running)
    assert all(by_id[i].cancel_sent for i in running)
    assert by_id[done].ok
    assert by_id[done].status == "completed"
    assert not by_id[done].cancel_sent
    assert isinstance(by_id[unknown].error, NotFoundError)
    assert isinstance(by_id["ft-a/b"].error, InvalidJobIdError)
    assert isinstance(by_id["42"].error, InvalidJobIdError)
    assert by_id["42"].error.job_id == 42
    assert report.by_status == {"cancelled": 20, "completed": 1}
    assert report.by_error == {"NotFoundError": 1, "InvalidJobIdError": 2}
    assert len(report.failed) == 3
    assert sim.counters["cancel"] == 22  # the invalid ids and the duplicate sent nothing
    with pytest.raises(ExceptionGroup) as info:
        report.raise_for_failures()
    assert "3 of 24 jobs failed" in str(info.value)


async def test_cancel_many_without_wait(sim: Simulator, jobs: JobManager) -> None:
    """Without wait, results carry cancel_requested and nothing is polled."""
    ids = sim.add_jobs(30)
    report = await jobs.cancel_many(ids)
    assert report.all_ok
    assert report.by_status == {"cancel_requested": 30}
    assert sim.counters["list"] == sim.counters["retrieve"] == 0


async def test_cancel_iter_yields_as_completed(sim: Simulator, jobs: JobManager) -> None:
    """cancel_iter yields every result once, in completion order."""
    ids = sim.add_jobs(40)
    seen = [result.job_id async for result in jobs.cancel_iter(ids, wait=True, timeout=30)]
    assert sorted(seen) == sorted(ids)


async def test_wait_many_batches_polling() -> None:
    """Waiting on 1,000 jobs costs one list request per tick, not one GET per job."""
    clock = ManualClock()
    sim = Simulator(clock=clock)
    ids = sim.add_jobs(1000, statuses=("running",))
    missing = "ft-22222222-2222-2222-2222-222222222222"
    async with sim.serve() as url, JobManager(base_url=url, poll=FAST_POLL) as jobs:
        task = asyncio.create_task(jobs.wait_many([*ids, missing], timeout=60))
        while sim.counters["list"] < 3:  # noqa: ASYNC110 - the counter lives in the server
            await asyncio.sleep(0.005)
        for job_id in ids:
            sim.set_status(job_id, "completed")
        report = await task
    assert report.by_status == {"completed": 1000}
    assert report.by_error == {"NotFoundError": 1}
    ticks = sim.counters["list"]
    assert 3 <= ticks <= 6
    # Only the id missing from the list was fetched on its own, once per tick at most.
    assert sim.counters["retrieve"] <= ticks
    assert sim.counters["cancel"] == 0


async def test_wait_many_timeout(sim: Simulator, jobs: JobManager) -> None:
    """Jobs not terminal in time get WaitTimeoutError results with their last record."""
    ids = sim.add_jobs(12, statuses=("running",))
    report = await jobs.wait_many(ids, timeout=0.5)  # the first look is at once: ample time
    assert report.by_error == {"WaitTimeoutError": 12}
    for result in report:
        assert isinstance(result.error, WaitTimeoutError)
        assert result.job is not None
        assert result.job.status == "running"


async def test_authentication_failure_is_fatal() -> None:
    """A 401 stops the batch: the rest get the same error without being sent."""
    sim = Simulator(api_key="right-key")
    ids = sim.add_jobs(200)
    async with (
        sim.serve() as url,
        JobManager(api_key="wrong-key", base_url=url, max_concurrency=4) as jobs,
    ):
        report = await jobs.cancel_many(ids, wait=True)
    assert report.by_error == {"AuthenticationError": 200}
    assert sim.counters["cancel"] <= 8
    with pytest.raises(ExceptionGroup) as info:
        report.raise_for_failures()
    assert all(isinstance(e, AuthenticationError) for e in info.value.exceptions)
    assert "wrong-key" not in str(info.value)


async def test_bad_request_on_active_job_is_a_failure(
    serve_app: Callable[[web.Application], AbstractAsyncContextManager[str]],
) -> None:
    """A 400 for a job that is still active is reported, not mistaken for 'already ended'."""
    job = {"id": "ft-active", "status": "running", "created_at": "2026-01-01T00:00:00Z"}

    async def refuse(request: web.Request) -> web.Response:
        error = {"message": "cannot cancel now", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=400)

    async def retrieve(request: web.Request) -> web.Response:
        return web.json_response(job)

    app = web.Application()
    app.router.add_post("/v1/fine-tunes/{id}/cancel", refuse)
    app.router.add_get("/v1/fine-tunes/{id}", retrieve)
    async with serve_app(app) as url, JobManager(base_url=url) as jobs:
        report = await jobs.cancel_many(["ft-active"])
        with pytest.raises(BadRequestError, match="cannot cancel now"):
            await jobs.cancel("ft-active")
    [result] = report.results
    assert isinstance(result.error, BadRequestError)
    assert not result.cancel_sent
    assert result.attempts == 2  # the cancel, then the look that found it still running


async def test_single_string_refused(jobs: JobManager) -> None:
    """A bare string is not taken for a list of ids."""
    with pytest.raises(TypeError):
        await jobs.cancel_many("ft-abc")


async def test_empty_batch(jobs: JobManager) -> None:
    """No ids, no results, no requests."""
    report = await jobs.cancel_many([])
    assert report == CancelReport(())


# -- events ---------------------------------------------------------------------


async def test_events_sync_and_async(sim: Simulator) -> None:
    """Sync and async callbacks hear status changes, retries and finished jobs."""
    heard: list[object] = []

    async def async_callback(event: object) -> None:
        heard.append(event)

    ids = sim.add_jobs(3, statuses=("running",))
    sim.inject(FaultKind.SERVER_ERROR_500, endpoint="cancel")
    for callback in (heard.append, async_callback):
        heard.clear()
        async with JobManager(
            base_url=sim.base_url, retry=FAST_RETRY, poll=FAST_POLL, on_event=callback
        ) as jobs:
            await jobs.cancel_many(ids, wait=True, timeout=30)
        finished = [e for e in heard if isinstance(e, JobFinished)]
        assert sorted(e.result.job_id for e in finished) == sorted(ids)
        statuses = [e for e in heard if isinstance(e, StatusChanged)]
        assert {e.job_id for e in statuses} == set(ids)
        sim.inject(FaultKind.SERVER_ERROR_500, endpoint="cancel")
    retries = [e for e in heard if isinstance(e, RetryEvent)]
    assert retries


async def test_broken_callback_loses_nothing(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in on_event is logged, and every result still arrives."""

    def broken(event: object) -> None:
        raise ValueError("progress bar bug")

    ids = sim.add_jobs(5)
    async with JobManager(base_url=sim.base_url, poll=FAST_POLL, on_event=broken) as jobs:
        report = await jobs.cancel_many(ids)
    assert report.all_ok
    assert "on_event callback raised" in caplog.text


# -- lifetime and cancellation ----------------------------------------------------


async def test_closed_manager_refuses(sim: Simulator) -> None:
    """A closed manager raises RuntimeError on use."""
    jobs = JobManager(base_url=sim.base_url)
    async with jobs:
        pass
    assert jobs.closed
    with pytest.raises(RuntimeError, match="closed"):
        await jobs.list()
    with pytest.raises(RuntimeError, match="closed"):
        jobs.cancel_iter(["ft-a"])


async def test_shared_session_stays_open(sim: Simulator) -> None:
    """A caller's session is used and left open when the manager closes."""
    async with aiohttp.ClientSession() as session:
        async with JobManager(base_url=sim.base_url, session=session) as jobs:
            assert await jobs.list() == []
        assert not session.closed


async def test_break_out_of_cancel_iter_stops_everything(sim: Simulator) -> None:
    """Leaving cancel_iter early stops all work: no request is sent afterwards."""
    ids = sim.add_jobs(300)
    async with JobManager(base_url=sim.base_url, max_concurrency=4, poll=FAST_POLL) as jobs:
        got: list[CancelResult] = []
        async with aclosing(jobs.cancel_iter(ids, wait=True)) as results:
            async for result in results:
                got.append(result)
                if len(got) == 10:
                    break
        sent = sim.total_requests
        for _ in range(5):
            await asyncio.sleep(0.02)
        assert sim.total_requests == sent
        assert sent < 300


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06])
async def test_caller_cancels_mid_batch(sim: Simulator, delay: float) -> None:
    """Cancelling the caller propagates CancelledError and leaves nothing running."""
    ids = sim.add_jobs(400)
    async with JobManager(base_url=sim.base_url, max_concurrency=8, poll=FAST_POLL) as jobs:
        task = asyncio.create_task(jobs.cancel_many(ids, wait=True))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sent = sim.total_requests
        for _ in range(5):
            await asyncio.sleep(0.02)
        assert sim.total_requests == sent


async def test_orchestrator_deadline(sim: Simulator) -> None:
    """An outer asyncio.timeout around a waiting batch ends it cleanly with TimeoutError."""
    ids = sim.add_jobs(50, statuses=("running",))
    async with JobManager(base_url=sim.base_url, poll=FAST_POLL) as jobs:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await jobs.wait_many(ids)
        sent = sim.total_requests
        await asyncio.sleep(0.05)
        assert sim.total_requests == sent


async def test_logging_names_jobs_not_keys(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The logger reports finished jobs and failures, never the key."""
    caplog.set_level(logging.DEBUG, logger="finetune_ops")
    job_id = sim.add_job("running")
    async with JobManager(api_key="sk-secret-xyz", base_url=sim.base_url) as jobs:
        await jobs.cancel_many([job_id, "ft-33333333-3333-3333-3333-333333333333"])
        assert "sk-secret-xyz" not in repr(jobs)
    assert job_id in caplog.text
    assert "sk-secret-xyz" not in caplog.text


async def test_closing_the_manager_stops_running_batches(sim: Simulator) -> None:
    """aclose() stops a batch still running elsewhere; its caller gets a RuntimeError."""
    ids = sim.add_jobs(50, statuses=("running",))
    jobs = JobManager(base_url=sim.base_url, poll=FAST_POLL)
    task = asyncio.create_task(jobs.wait_many(ids, timeout=60))
    while sim.counters["list"] < 1:  # noqa: ASYNC110 - the counter lives in the server
        await asyncio.sleep(0.005)
    await jobs.aclose()
    with pytest.raises(RuntimeError, match="closed while a batch was running"):
        await task
    sent = sim.total_requests
    await asyncio.sleep(0.05)
    assert sim.total_requests == sent


def test_logger_has_a_null_handler() -> None:
    """The library's logger is silent until the application configures logging."""
    handlers = logging.getLogger("finetune_ops").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


async def test_unusable_list_falls_back_to_one_get_per_job(sim: Simulator) -> None:
    """When the list is unreadable three ticks in a row, each job is polled on its own."""
    ids = sim.add_jobs(20, statuses=("completed",))
    sim.inject(FaultKind.TRUNCATED_JSON, endpoint="list", times=3)
    async with JobManager(base_url=sim.base_url, retry=FAST_RETRY, poll=FAST_POLL) as jobs:
        report = await jobs.wait_many(ids, timeout=30)
    assert report.by_status == {"completed": 20}
    assert sim.counters["list"] == 3  # a look is not retried: the next tick is its retry
    assert sim.counters["retrieve"] == 20
