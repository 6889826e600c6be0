"""One call's work on many jobs: cancel each, watch each, and hand back one result per job.

A batch validates every id before anything is sent, collapses duplicates, then
runs a small pool of cancel workers and one poller under a supervisor task.
Results go to the caller through a queue in the order they complete. When the
caller stops listening (it is cancelled, or breaks out of its loop) the
supervisor is cancelled and awaited, so no task or request outlives the call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable

from ._api import CallState, FineTunesAPI
from ._errors import BadRequestError, FinetuneOpsError, InvalidJobIdError
from ._events import CancelAccepted, Emit, JobFinished, StatusChanged
from ._ids import check_job_id
from ._policies import PollPolicy
from ._poller import FATAL_ERRORS, Poller, Waiter
from ._records import FineTuneJob
from ._results import CancelResult

__all__ = ["Batch"]

_WORKERS_PER_SLOT = 8


class _Stopped:
    """Put on the result queue when the supervisor ends before every job has a result."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Batch:
    """Cancels (when ``cancel``) and watches (when ``wait``) a set of jobs; see :meth:`run`."""

    def __init__(
        self,
        api: FineTunesAPI,
        poll: PollPolicy,
        job_ids: Iterable[object],
        *,
        cancel: bool,
        wait: bool,
        timeout: float,
        emit: Emit,
        running: set[Batch] | None = None,
    ) -> None:
        if not (cancel or wait):
            raise ValueError("a batch must cancel, wait, or both")
        self._api = api
        self._poll = poll
        self._cancel = cancel
        self._wait = wait
        self._timeout = timeout
        self._emit = emit
        self._queue: asyncio.Queue[CancelResult | _Stopped] = asyncio.Queue()
        self._todo: deque[str] = deque()
        self._sent: set[str] = set()
        self._fatal: FinetuneOpsError | None = None
        self._poller: Poller | None = None
        self._start = 0.0
        self._supervisor: asyncio.Task[None] | None = None
        self._running = set() if running is None else running
        self._valid, self._invalid, self.order = _sort_ids(job_ids)

    async def run(self) -> AsyncGenerator[CancelResult, None]:
        """Yield one result per unique id, invalid ids first, then in completion order."""
        self._start = asyncio.get_running_loop().time()
        for result in self._invalid:
            await self._emit(JobFinished(result=result))
            yield result
        if not self._valid:
            return
        self._supervisor = asyncio.create_task(
            self._supervise(self._valid), name="finetune_ops batch"
        )
        self._running.add(self)
        try:
            for _ in range(len(self._valid)):
                item = await self._queue.get()
                if isinstance(item, _Stopped):
                    if isinstance(item.error, asyncio.CancelledError):
                        raise RuntimeError("the JobManager was closed while a batch was running")
                    raise item.error
                yield item
        finally:
            self._running.discard(self)
            await self.stop()

    async def stop(self) -> None:
        """Cancel all work of the batch and wait until it has stopped."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)

    async def _supervise(self, job_ids: list[str]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                if self._wait:
                    deadline = self._start + self._timeout
                    self._poller = poller = Poller(
                        self._api,
                        self._poll,
                        deadline,
                        on_update=self._on_update,
                        on_finish=self._on_finish,
                        on_fatal=self._fail_all,
                    )
                    group.create_task(poller.run())
                if self._cancel:
                    self._todo.extend(job_ids)
                    # Workers wait out their job's retry backoff, so there are more of
                    # them than request slots: the slots stay busy meanwhile.
                    workers = min(len(job_ids), _WORKERS_PER_SLOT * self._api.max_concurrency)
                    tasks = [group.create_task(self._work()) for _ in range(workers)]
                    if self._poller is not None:
                        await asyncio.gather(*tasks)
                        self._poller.close()
                elif self._poller is not None:
                    for job_id in job_ids:
                        self._poller.add(Waiter(job_id, None, CallState(halt=self._halt)))
                    self._poller.close()
        except BaseException as error:
            self._queue.put_nowait(_Stopped(error))
            raise

    async def _work(self) -> None:
        while self._todo:
            await self._cancel_one(self._todo.popleft())

    async def _cancel_one(self, job_id: str) -> None:
        call = CallState(halt=self._halt)
        if self._fatal is not None:
            await self._finish(job_id, call, None, self._fatal)
            return
        try:
            job = await self._api.cancel(job_id, call=call)
        except BadRequestError as error:
            # Most often the job has already ended: that is not a failure.
            ended = await self._terminal_or_none(job_id, call)
            if ended is None:
                await self._finish(job_id, call, None, error)
                return
            job = ended
        except FATAL_ERRORS as error:
            await self._fail_all(error)
            await self._finish(job_id, call, None, error)
            return
        except FinetuneOpsError as error:
            await self._finish(job_id, call, None, error)
            return
        else:
            self._sent.add(job_id)
            await self._emit(CancelAccepted(job_id=job_id, job=job))
        await self._emit(StatusChanged(job_id=job_id, previous=None, job=job))
        if self._poller is not None and not job.status.is_terminal:
            self._poller.add(Waiter(job_id, job, call))
        else:
            await self._finish(job_id, call, job, None)

    async def _terminal_or_none(self, job_id: str, call: CallState) -> FineTuneJob | None:
        try:
            job = await self._api.retrieve(job_id, call=call)
        except FinetuneOpsError:
            return None
        return job if job.status.is_terminal else None

    def _halt(self) -> FinetuneOpsError | None:
        return self._fatal

    async def _fail_all(self, error: FinetuneOpsError) -> None:
        """Stop sending: every job without a result yet gets ``error``."""
        if self._fatal is None:
            self._fatal = error
        if self._poller is not None:
            await self._poller.fail_all(error)

    async def _on_update(self, waiter: Waiter, job: FineTuneJob) -> None:
        previous = waiter.job.status if waiter.job is not None else None
        if previous != job.status:
            await self._emit(StatusChanged(job_id=waiter.job_id, previous=previous, job=job))

    async def _on_finish(self, waiter: Waiter, error: FinetuneOpsError | None) -> None:
        await self._finish(waiter.job_id, waiter.call, waiter.job, error)

    async def _finish(
        self,
        job_id: str,
        call: CallState,
        job: FineTuneJob | None,
        error: FinetuneOpsError | None,
    ) -> None:
        result = CancelResult(
            job_id=job_id,
            job=job,
            error=error,
            cancel_sent=job_id in self._sent,
            attempts=call.attempts,
            elapsed=asyncio.get_running_loop().time() - self._start,
        )
        self._queue.put_nowait(result)
        await self._emit(JobFinished(result=result))


def _sort_ids(job_ids: Iterable[object]) -> tuple[list[str], list[CancelResult], list[str]]:
    """Valid unique ids, a result for each invalid one, and every unique key in first-seen order.

    An id that is not a str is keyed by its repr; its error keeps the object itself.
    """
    if isinstance(job_ids, str | bytes):
        raise TypeError("job_ids must be an iterable of ids, not a single string")
    valid: list[str] = []
    invalid: list[CancelResult] = []
    order: dict[str, None] = {}
    for job_id in job_ids:
        key = job_id if isinstance(job_id, str) else repr(job_id)
        if key in order:
            continue
        order[key] = None
        try:
            valid.append(check_job_id(job_id))
        except InvalidJobIdError as error:
            invalid.append(CancelResult(job_id=key, error=error))
    return valid, invalid, list(order)
