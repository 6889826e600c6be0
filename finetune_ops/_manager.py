"""JobManager: the public face for cancelling and watching fine-tuning jobs."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import aiohttp

from ._api import FineTunesAPI
from ._batch import Batch
from ._bodies import DEFAULT_MAX_BUFFERED_BYTES
from ._errors import FinetuneOpsError
from ._events import OnEvent, make_emitter
from ._gate import RateGate
from ._ids import check_job_id, check_job_ids
from ._policies import (
    DEFAULT_POLL,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    PollPolicy,
    RetryPolicy,
    Timeouts,
    seconds,
)
from ._poller import look_once
from ._records import FineTuneCheckpoint, FineTuneEvent, FineTuneJob
from ._results import CancelReport, CancelResult
from ._state import BatchState

__all__ = ["JobManager"]

Timeout = float | timedelta | None


class JobManager:
    """Cancels and watches Together AI fine-tuning jobs, one or tens of thousands at a time.

    Use it as an async context manager::

        async with JobManager() as jobs:
            report = await jobs.cancel_many(ids, wait=True)

    The key comes from ``api_key``, else ``TOGETHER_API_KEY``; the base URL from
    ``base_url``, else ``TOGETHER_BASE_URL``, else the public API. Pass your own
    ``session`` to share its connection pool; it is then never closed here.
    ``max_concurrency`` caps HTTP requests in flight (not jobs);
    ``max_requests_per_second`` is a ceiling on the request rate, which the
    manager's :class:`RateGate` finds by itself from the API's answers; pass
    ``rate_gate`` to share one gate between managers on the same key.
    ``max_buffered_bytes`` bounds the
    memory that answers being read may hold at once, across the manager (one
    job's answer may hold 64 MiB, the list of every job 1 GiB, and all of them
    together no more than this). ``on_event`` (sync or async) hears retries,
    accepted cancels, status changes and finished jobs.

    Single-job calls raise on failure. Batch calls never raise for one job:
    every unique id gets exactly one :class:`CancelResult`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_concurrency: int = 32,
        retry: RetryPolicy = DEFAULT_RETRY,
        poll: PollPolicy = DEFAULT_POLL,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        max_requests_per_second: float | None = None,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        rate_gate: RateGate | None = None,
        on_event: OnEvent | None = None,
    ) -> None:
        for name, value, cls in (
            ("retry", retry, RetryPolicy),
            ("poll", poll, PollPolicy),
            ("timeouts", timeouts, Timeouts),
        ):
            if not isinstance(value, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
        self._emit = make_emitter(on_event)
        self._api = FineTunesAPI(
            api_key=api_key,
            base_url=base_url,
            session=session,
            retry=retry,
            timeouts=timeouts,
            max_concurrency=max_concurrency,
            max_requests_per_second=max_requests_per_second,
            max_buffered_bytes=max_buffered_bytes,
            allow_insecure_http=allow_insecure_http,
            rate_gate=rate_gate,
            on_event=self._emit,
        )
        self.poll = poll
        self._closed = False
        self._running: set[Batch] = set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<JobManager {state} base_url={self.base_url!r} "
            f"max_concurrency={self.max_concurrency}>"
        )

    @property
    def base_url(self) -> str:
        return self._api.base_url

    @property
    def max_concurrency(self) -> int:
        return self._api.max_concurrency

    @property
    def retry(self) -> RetryPolicy:
        return self._api.retry

    @property
    def timeouts(self) -> Timeouts:
        return self._api.timeouts

    @property
    def rate_gate(self) -> RateGate:
        """The gate pacing this manager's requests: its ``rate``, ``reason``, ``paused_for``."""
        return self._api.gate

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the manager and its own session (a session passed in stays open).

        Batches still running are stopped first; whoever awaits them gets a RuntimeError.
        """
        self._closed = True
        for batch in list(self._running):
            await batch.stop(closing=True)
        await self._api.aclose()

    # -- single jobs: these raise ------------------------------------------------

    async def cancel(
        self, job_id: str, *, wait: bool = False, timeout: Timeout = None
    ) -> FineTuneJob:
        """Cancel one job and return its record; with ``wait``, once it is terminal.

        A job that had already ended is returned as it is, not treated as an error.
        ``timeout`` bounds the whole call, retries included; with ``wait`` it
        defaults to the poll policy's. Raises the job's error: NotFoundError,
        WaitTimeoutError, and so on.
        """
        return await self._one(job_id, cancel=True, wait=wait, timeout=timeout)

    async def wait(self, job_id: str, *, timeout: Timeout = None) -> FineTuneJob:
        """Return the job once it is terminal; WaitTimeoutError (with ``.job``) if not in time.

        ``timeout`` defaults to the poll policy's.
        """
        return await self._one(job_id, cancel=False, wait=True, timeout=timeout)

    async def retrieve(self, job_id: str) -> FineTuneJob:
        """The job's full record."""
        self._check_open()
        return await self._api.retrieve(job_id)

    async def list(self) -> list[FineTuneJob]:
        """Every job of the account."""
        self._check_open()
        return await self._api.list()

    async def events(self, job_id: str) -> tuple[FineTuneEvent, ...]:
        """The job's events, oldest first."""
        self._check_open()
        return await self._api.events(job_id)

    async def checkpoints(self, job_id: str) -> tuple[FineTuneCheckpoint, ...]:
        """The checkpoints the job saved, oldest first: what a cancelled job left behind."""
        self._check_open()
        return await self._api.checkpoints(job_id)

    async def delete(
        self, job_id: str, *, cancel_first: bool = False, timeout: Timeout = None
    ) -> FineTuneJob:
        """Delete one job that has ended; return its last record.

        A job still active raises ActiveJobError, unless ``cancel_first``: then
        it is cancelled, waited for until terminal, and deleted. ``timeout``
        bounds the whole call (with ``cancel_first`` it defaults to the poll
        policy's).
        """
        check_job_id(job_id)
        batch = self._batch([job_id], cancel=cancel_first, wait=False, timeout=timeout, delete=True)
        return await self._one_result(batch)

    async def delete_many(
        self, job_ids: Iterable[str], *, cancel_first: bool = False, timeout: Timeout = None
    ) -> CancelReport:
        """Delete every job that has ended, with the batch semantics of :meth:`cancel_many`.

        One result per unique id, ``deleted`` true for each job deleted. A job
        still active fails with ActiveJobError and is left alone, unless
        ``cancel_first``: then it is cancelled, waited for, and deleted.
        """
        batch = self._batch(job_ids, cancel=cancel_first, wait=False, timeout=timeout, delete=True)
        return await self._report(batch)

    def delete_iter(
        self, job_ids: Iterable[str], *, cancel_first: bool = False, timeout: Timeout = None
    ) -> AsyncGenerator[CancelResult, None]:
        """As :meth:`delete_many`, yielding each result as it completes."""
        batch = self._batch(job_ids, cancel=cancel_first, wait=False, timeout=timeout, delete=True)
        return self._results(batch)

    async def create(self, *, model: str, training_file: str, **params: Any) -> FineTuneJob:
        """Start a fine-tuning job (never retried, so that a lost answer cannot start two)."""
        self._check_open()
        return await self._api.create(model=model, training_file=training_file, **params)

    # -- batches: one result per job, never raising for one job -------------------

    async def cancel_many(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        wait: bool = False,
        timeout: Timeout = None,
        state: BatchState | None = None,
    ) -> CancelReport:
        """Cancel every job; with ``wait``, until each is terminal. Results in input order.

        ``timeout`` bounds the whole call, cancels and their retries included
        (with ``wait`` it defaults to the poll policy's): a job without its
        answer by then gets a WaitTimeoutError.

        With ``state`` (a :class:`BatchState`), the ids and the deadline come from
        it and it is kept current as the batch goes: started again from it, in
        this process or another, a batch skips the jobs that have their result
        and sends no second cancel for one the API accepted.
        """
        batch = self._batch(job_ids, cancel=True, wait=wait, timeout=timeout, state=state)
        return await self._report(batch)

    async def wait_many(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        timeout: Timeout = None,
        state: BatchState | None = None,
    ) -> CancelReport:
        """Wait until every job is terminal, cancelling none. Results in input order.

        ``state`` works as for :meth:`cancel_many`.
        """
        batch = self._batch(job_ids, cancel=False, wait=True, timeout=timeout, state=state)
        return await self._report(batch)

    def cancel_iter(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        wait: bool = False,
        timeout: Timeout = None,
        state: BatchState | None = None,
    ) -> AsyncGenerator[CancelResult, None]:
        """Cancel every job, yielding each result as it completes.

        Invalid ids are checked before anything is sent and come out first. Leaving
        the loop early stops all work of the batch; wrap the iterator in
        :func:`contextlib.aclosing` to have that happen before the next line runs.
        ``state`` works as for :meth:`cancel_many`.
        """
        batch = self._batch(job_ids, cancel=True, wait=wait, timeout=timeout, state=state)
        return self._results(batch)

    def wait_iter(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        timeout: Timeout = None,
        state: BatchState | None = None,
    ) -> AsyncGenerator[CancelResult, None]:
        """Yield each job's result as it becomes terminal, cancelling none.

        Works as :meth:`cancel_iter` does, without sending any cancel.
        """
        batch = self._batch(job_ids, cancel=False, wait=True, timeout=timeout, state=state)
        return self._results(batch)

    async def poll_once(self, job_ids: Iterable[str]) -> dict[str, FineTuneJob | FinetuneOpsError]:
        """Look at each job once, for callers that own their loop (a sensor, a trigger).

        With more jobs than the poll policy's ``batch_threshold``, one list
        request answers for all and only jobs missing from it are fetched on
        their own. Returns each id's record, or the error that stopped the look
        at it, in input order; an invalid id raises InvalidJobIdError first.
        """
        self._check_open()
        return await look_once(self._api, self.poll, check_job_ids(job_ids))

    # -- plumbing ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this JobManager is closed; create a new one")

    def _timeout(self, timeout: Timeout, *, wait: bool) -> float | None:
        default = self.poll.timeout if wait else math.inf  # without wait: only when asked
        value = default if timeout is None else seconds(timeout)
        if value < 0:
            raise ValueError(f"timeout must be >= 0, got {value!r}")
        return value if math.isfinite(value) else None

    def _batch(
        self,
        job_ids: Iterable[object] | None,
        *,
        cancel: bool,
        wait: bool,
        timeout: Timeout,
        state: BatchState | None = None,
        delete: bool = False,
    ) -> Batch:
        self._check_open()
        if state is not None:
            if not isinstance(state, BatchState):
                raise TypeError(f"state must be a BatchState, not {type(state).__name__}")
            if timeout is not None:
                raise ValueError("a batch started from a state keeps the state's deadline")
            if job_ids is not None and list(job_ids) != list(state.jobs):
                raise ValueError("job_ids differ from the state's; pass only the state")
            job_ids, seconds_left = state.jobs, state.seconds_left()
        elif job_ids is None:
            raise TypeError("give the job ids, or a state to resume")
        else:
            seconds_left = self._timeout(timeout, wait=wait or (delete and cancel))
        return Batch(
            self._api,
            self.poll,
            job_ids,
            cancel=cancel,
            wait=wait,
            timeout=seconds_left,
            emit=self._emit,
            state=state,
            delete=delete,
        )

    async def _results(self, batch: Batch) -> AsyncGenerator[CancelResult, None]:
        """The batch's results, with the batch known to the manager while it runs."""
        self._check_open()
        self._running.add(batch)
        try:
            async with aclosing(batch.run()) as results:
                async for result in results:
                    yield result
        finally:
            self._running.discard(batch)

    async def _report(self, batch: Batch) -> CancelReport:
        async with aclosing(self._results(batch)) as results:
            by_id = {result.job_id: result async for result in results}
        return CancelReport(tuple(by_id[key] for key in batch.order))

    async def _one(self, job_id: str, *, cancel: bool, wait: bool, timeout: Timeout) -> FineTuneJob:
        check_job_id(job_id)
        return await self._one_result(
            self._batch([job_id], cancel=cancel, wait=wait, timeout=timeout)
        )

    async def _one_result(self, batch: Batch) -> FineTuneJob:
        async with aclosing(self._results(batch)) as results:
            result = await anext(results)
        if result.error is not None:
            raise result.error
        assert result.job is not None
        return result.job
