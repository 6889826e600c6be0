"""One call's work on many jobs: cancel each, watch each, and hand back one result per job.

A batch validates every id before anything is sent and collapses duplicates.
Then a supervisor task runs a pool of cancel workers and one poller, which all
share one :class:`Ledger`. Results reach the caller through the ledger's queue
as they complete.

The supervisor enforces the deadline: when it passes, every task is cancelled
at once (requests in flight included) and each job still without a result gets
a WaitTimeoutError. When the caller stops listening (it is cancelled, or leaves
its loop) the supervisor is cancelled and awaited, so no task or request
outlives the call. If the supervisor ends with results still owed, whatever
the reason, the caller gets an error that says so, never a wait for ever.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable

from ._api import FineTunesAPI
from ._errors import (
    ActiveJobError,
    BadRequestError,
    FinetuneOpsError,
    InvalidJobIdError,
    InvalidResponseError,
    NotFoundError,
)
from ._events import Emit, JobFinished
from ._ids import check_job_id
from ._ledger import Entry, Halted, Ledger
from ._policies import PollPolicy
from ._poller import Poller, look_once
from ._records import FineTuneJob, JobStatus
from ._results import CancelResult
from ._state import BatchState

__all__ = ["Batch"]

_WORKERS_PER_SLOT = 8


class Batch:
    """Cancels (when ``cancel``) and watches (when ``wait``) a set of jobs; see :meth:`run`.

    With ``delete``, each job that has ended is deleted; one still active is
    refused, or with ``cancel`` cancelled and waited for first. ``timeout``
    bounds the whole call, in seconds from the start of :meth:`run` (``None``:
    no bound).
    """

    def __init__(
        self,
        api: FineTunesAPI,
        poll: PollPolicy,
        job_ids: Iterable[object],
        *,
        cancel: bool,
        wait: bool,
        timeout: float | None,
        emit: Emit,
        state: BatchState | None = None,
        delete: bool = False,
    ) -> None:
        if not (cancel or wait or delete):
            raise ValueError("a batch must cancel, wait, delete, or several")
        self._api = api
        self._poll = poll
        self._cancel = cancel
        self._wait = wait or (delete and cancel)  # a job is deleted once it has ended
        self._delete = delete
        self._timeout = timeout
        self._emit = emit
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None  # what ended the supervisor early
        self._closing = False
        self._state = state
        self._valid, self._invalid, self.order = _sort_ids(job_ids)

    async def run(self) -> AsyncGenerator[CancelResult, None]:
        """Yield one result per unique id, invalid ids first, then in completion order."""
        started = asyncio.get_running_loop().time()
        state = self._state
        done_before = [] if state is None else [state.result(job_id) for job_id in state.finished]
        for result in [*self._invalid, *filter(None, done_before)]:
            if state is not None:
                state.record_result(result)
            await self._emit(JobFinished(result=result))
            yield result
        if state is None:
            pending = self._valid
        else:
            waiting = set(state.pending)
            pending = [job_id for job_id in self._valid if job_id in waiting]
        if not pending:
            return
        ledger = Ledger(
            pending,
            cancelling=self._cancel,
            deadline=None if self._timeout is None else started + self._timeout,
            started=started,
            emit=self._emit,
            state=state,
            deleting=self._delete,
        )
        if state is not None:
            _resume(ledger, state)
        self._supervisor = asyncio.create_task(self._supervise(ledger), name="finetune_ops batch")
        try:
            while (item := await ledger.results.get()) is not None:
                yield item
            self._check_complete(ledger)
        finally:
            await self.stop()

    async def stop(self, *, closing: bool = False) -> None:
        """Cancel all work of the batch and wait until it has stopped.

        ``closing``: the manager is closing, which is what the caller will hear.
        """
        self._closing = self._closing or closing
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)

    def _check_complete(self, ledger: Ledger) -> None:
        """After the last item: raise if the batch ended without every result."""
        failure = self._failure
        if self._closing:
            raise RuntimeError("the JobManager was closed while a batch was running")
        if failure is not None and not isinstance(failure, asyncio.CancelledError):
            raise failure
        if ledger.owed:
            why = " (its task was cancelled from outside)" if failure is not None else ""
            raise RuntimeError(
                f"the batch ended with {ledger.owed} of {len(self._valid)} results missing{why}"
            )

    # -- the supervisor and its tasks --------------------------------------------

    async def _supervise(self, ledger: Ledger) -> None:
        try:
            try:
                async with asyncio.timeout_at(ledger.deadline):
                    await self._work_all(ledger)
            except TimeoutError:
                await ledger.expire()
        except asyncio.CancelledError as error:
            self._failure = error
            raise
        except BaseException as error:
            # A bug or misuse (a closed session): the caller hears it as it is,
            # not wrapped in the task group's ExceptionGroup.
            self._failure = _first_leaf(error)
        finally:
            ledger.results.put_nowait(None)

    async def _work_all(self, ledger: Ledger) -> None:
        poller = Poller(self._api, self._poll, ledger) if self._wait else None
        try:
            async with asyncio.TaskGroup() as group:
                polling = None if poller is None else group.create_task(poller.run())
                if self._delete:
                    group.create_task(self._delete_all(ledger, poller, polling, group))
                    return
                # A cancel the API accepted before (a resumed batch) is not sent again.
                to_send: deque[Entry] = deque()
                for entry in list(ledger.entries.values()):  # following one may finish it
                    if self._cancel and not entry.accepted:
                        to_send.append(entry)
                    else:
                        await self._follow(entry, ledger, poller)
                if to_send:
                    group.create_task(self._cancel_all(to_send, ledger, poller))
                elif poller is not None:
                    poller.close()
        except* Halted:
            await ledger.finish_rest()

    async def _cancel_all(self, todo: deque[Entry], ledger: Ledger, poller: Poller | None) -> None:
        # The workers take the entries out of ``todo``, so that one whose job
        # has its result is held by nothing here. They wait out their job's
        # retry backoff, so there are more of them than request slots: the
        # slots stay busy meanwhile.
        workers = min(len(todo), _WORKERS_PER_SLOT * self._api.max_concurrency)
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._work(todo, ledger, poller))
        if poller is not None:
            poller.close()

    async def _delete_all(
        self,
        ledger: Ledger,
        poller: Poller | None,
        polling: asyncio.Task[None] | None,
        group: asyncio.TaskGroup,
    ) -> None:
        """Look at every job once; delete those that ended, after cancelling the rest if asked."""
        deletable = ledger.deletable
        assert deletable is not None
        workers = min(len(ledger.entries), _WORKERS_PER_SLOT * self._api.max_concurrency)
        for _ in range(workers):
            group.create_task(self._delete_work(deletable, ledger))
        to_cancel = await self._look_before_delete(ledger)
        if to_cancel:
            await self._cancel_all(to_cancel, ledger, poller)  # closes the poller when done
        elif poller is not None:
            poller.close()
        if polling is not None:
            await polling  # every job it watched has ended, and is queued for deletion
        for _ in range(workers):
            deletable.put_nowait(None)

    async def _look_before_delete(self, ledger: Ledger) -> deque[Entry]:
        """Look at every job once: queue those that ended for deletion; return those to cancel."""
        entries = list(ledger.entries.values())
        looks = await look_once(self._api, self._poll, [entry.job_id for entry in entries])
        to_cancel: deque[Entry] = deque()
        for entry in entries:
            look = looks[entry.job_id]
            if isinstance(look, FinetuneOpsError):
                await ledger.failed(entry, look)
            else:
                await ledger.update(entry, look)
                if look.status.is_terminal:
                    await ledger.ended(entry)
                elif self._cancel:
                    to_cancel.append(entry)
                else:
                    await ledger.finish(entry, _still_active(entry, look))
        return to_cancel

    async def _delete_work(self, deletable: asyncio.Queue[Entry | None], ledger: Ledger) -> None:
        while (entry := await deletable.get()) is not None:
            try:
                await self._api.delete(entry.job_id, call=entry)
            except NotFoundError:
                entry.deleted = True  # gone since it was seen: what was asked
            except FinetuneOpsError as error:
                await ledger.failed(entry, error)
                continue
            else:
                entry.deleted = True
                ledger.answered()
            await ledger.finish(entry)

    async def _work(self, todo: deque[Entry], ledger: Ledger, poller: Poller | None) -> None:
        while todo:
            await self._cancel_one(todo.popleft(), ledger, poller)

    async def _cancel_one(self, entry: Entry, ledger: Ledger, poller: Poller | None) -> None:
        try:
            # A job the poller will watch needs only its status from this answer.
            job: FineTuneJob | None = await self._api.cancel(
                entry.job_id, call=entry, brief=poller is not None
            )
        except BadRequestError as refusal:
            await self._after_refusal(entry, refusal, ledger, poller)
            return
        except InvalidResponseError as error:
            if not (error.status_code and 200 <= error.status_code < 300):
                await ledger.finish(entry, error)
                return
            # The API took the cancel; only its answer could not be read.
            entry.last_error = error
            job = None
        except FinetuneOpsError as error:
            await ledger.failed(entry, error)
            return
        await ledger.accept(entry, job)
        await self._follow(entry, ledger, poller)

    async def _after_refusal(
        self, entry: Entry, refusal: BadRequestError, ledger: Ledger, poller: Poller | None
    ) -> None:
        """A 400 to a cancel: most often the job has ended, or is already being cancelled."""
        job = await self._look(entry)
        if job is None:
            await ledger.finish(entry, refusal)
        elif job.status == JobStatus.CANCEL_REQUESTED:
            # A cancel already in progress (perhaps ours, whose first answer was lost).
            await ledger.accept(entry, job)
            await self._follow(entry, ledger, poller)
        else:
            ledger.answered()
            await ledger.update(entry, job)
            if job.status.is_terminal:
                await ledger.ended(entry)
            else:
                await ledger.finish(entry, refusal)

    async def _follow(self, entry: Entry, ledger: Ledger, poller: Poller | None) -> None:
        """After an accepted cancel: watch the job, or give it its result now."""
        if entry.job is not None and entry.job.status.is_terminal:
            await ledger.ended(entry)
        elif poller is not None:
            poller.add(entry)
        elif entry.job is None:
            # Not waiting, and the answer was unreadable: one look for its record.
            job = await self._look(entry)
            if job is not None:
                await ledger.update(entry, job)
            await ledger.finish(entry, None if job is not None else entry.last_error)
        else:
            await ledger.finish(entry)

    async def _look(self, entry: Entry) -> FineTuneJob | None:
        try:
            return await self._api.retrieve(entry.job_id, call=entry)
        except FinetuneOpsError as error:
            entry.last_error = error
            return None


def _still_active(entry: Entry, job: FineTuneJob) -> ActiveJobError:
    return ActiveJobError(
        f"{entry.job_id} is still {str(job.status)!r}: not deleted "
        "(pass cancel_first=True to cancel it, wait until it ends, then delete it)",
        job_id=entry.job_id,
        job=job,
    )


def _resume(ledger: Ledger, state: BatchState) -> None:
    """Carry what the state knows into the ledger's entries: accepted cancels, last statuses."""
    for entry in ledger.entries.values():
        known = state.jobs[entry.job_id]
        entry.accepted = known.cancel_accepted
        if known.status is not None:
            entry.job = FineTuneJob(id=entry.job_id, status=JobStatus(known.status))


def _first_leaf(error: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups that is not a cancellation."""
    if isinstance(error, BaseExceptionGroup):
        leaves = [_first_leaf(inner) for inner in error.exceptions]
        for leaf in leaves:
            if not isinstance(leaf, asyncio.CancelledError):
                return leaf
        return leaves[0]
    return error


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
    # With every id valid, the two lists would be the same: one is kept.
    return valid, invalid, list(order) if invalid else valid
