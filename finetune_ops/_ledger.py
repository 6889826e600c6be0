"""What a batch knows, in one object: each job's entry, the results owed, the fatal error.

The cancel workers, the poller and the supervisor of one batch are all given
the same :class:`Ledger`, and change a job's state only through it, so the
rules live in one place: a job gets exactly one result; a cancel is accepted at
most once; a 401 halts the batch at once, a 403 only when it is clearly the
key's and not one job's.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ._api import CallState
from ._errors import (
    AuthenticationError,
    FinetuneOpsError,
    PermissionDeniedError,
    WaitTimeoutError,
)
from ._events import CancelAccepted, Emit, JobFinished, StatusChanged
from ._records import FineTuneJob
from ._results import CancelResult
from ._state import BatchState

__all__ = ["Entry", "Halted", "Ledger"]

#: Distinct jobs refused with 403, none accepted between, after which the key is blamed.
FORBIDDEN_BEFORE_HALT: Final = 3


class Halted(Exception):
    """Raised by :meth:`Ledger.halt` to stop every task of the batch at once."""


class Entry(CallState):
    """One job of a batch: its last record, its HTTP attempts, and what became of its cancel."""

    __slots__ = (
        "accepted",
        "deleted",
        "done",
        "due",
        "failed_looks",
        "job",
        "job_id",
        "last_error",
        "looks",
    )

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: FineTuneJob | None = None
        self.accepted = False  # the API answered 2xx to a cancel for it
        self.done = False  # it has its result
        self.deleted = False  # the API deleted it (a delete batch)
        self.last_error: FinetuneOpsError | None = None  # the last one met while watching
        self.due = 0.0  # when the poller looks at it next (the event loop's clock)
        self.looks = 0  # how often the poller has looked at it
        self.failed_looks = 0  # its own looks that failed in a row


class Ledger:
    """The shared state of one batch; see the module docstring.

    ``deadline`` is on the event loop's clock (``None``: none). ``cancelling``
    says whether the batch sends cancels, which decides what a timeout says.
    ``state``, when given, is kept current with every change.

    ``entries`` holds the jobs still owed a result, in the order given: a job's
    entry (its record, its last error, the poller's schedule) is dropped with
    its result, so a long batch keeps little more per job than the result.
    """

    def __init__(
        self,
        job_ids: list[str],
        *,
        cancelling: bool,
        deadline: float | None,
        started: float,
        emit: Emit,
        state: BatchState | None = None,
        deleting: bool = False,
    ) -> None:
        self.entries = {job_id: Entry(job_id) for job_id in job_ids}
        # A dict never shrinks as keys go: it is copied when it has become this small.
        self._compact_below = len(self.entries) // 4
        self.state = state
        #: In a delete batch, jobs that have ended and wait to be deleted (None: no more).
        self.deletable: asyncio.Queue[Entry | None] | None = asyncio.Queue() if deleting else None
        self.owed = len(self.entries)
        self.cancelling = cancelling
        self.deadline = deadline
        self.fatal: FinetuneOpsError | None = None
        #: Results as they come; ``None`` after the last (or when the batch stopped early).
        self.results: asyncio.Queue[CancelResult | None] = asyncio.Queue()
        self._started = started
        self._emit = emit
        self._forbidden: set[str] = set()

    # -- what the API said -------------------------------------------------------

    def answered(self) -> None:
        """A request of the batch succeeded: 403s so far were about their own jobs."""
        self._forbidden.clear()

    async def accept(self, entry: Entry, job: FineTuneJob | None) -> None:
        """The API took the cancel for ``entry`` (``job`` is its answer, if readable)."""
        self.answered()
        if not entry.accepted:
            entry.accepted = True
            if self.state is not None:
                self.state.record_accepted(entry.job_id)
            if not self._emit.quiet:
                await self._emit(CancelAccepted(job_id=entry.job_id, job=job))
        if job is not None:
            await self.update(entry, job)

    async def update(self, entry: Entry, job: FineTuneJob) -> None:
        """A newer record of ``entry``'s job."""
        previous = entry.job.status if entry.job is not None else None
        entry.job = job
        if self.state is not None:
            self.state.record_status(entry.job_id, job.status)
        if previous != job.status and not self._emit.quiet:
            await self._emit(StatusChanged(job_id=entry.job_id, previous=previous, job=job))

    async def failed(self, entry: Entry, error: FinetuneOpsError) -> None:
        """``entry``'s job fails with ``error``; a 401 or 403 may halt the batch (see refused)."""
        if isinstance(error, AuthenticationError | PermissionDeniedError):
            await self.refused(entry, error)
        else:
            await self.finish(entry, error)

    async def refused(
        self, entry: Entry | None, error: AuthenticationError | PermissionDeniedError
    ) -> None:
        """A 401 or 403, for ``entry`` (None: for the whole list): halt if it is the key's.

        A 401 is always the key. A 403 is when it answered the list, or came for
        several distinct jobs with no success between them; else it is one job's
        (another project's, say) and only that job fails.
        """
        if entry is not None:
            await self.finish(entry, error)
            if isinstance(error, PermissionDeniedError):
                self._forbidden.add(entry.job_id)
                if len(self._forbidden) < FORBIDDEN_BEFORE_HALT:
                    return
        self.halt(error)

    def halt(self, error: FinetuneOpsError) -> None:
        """Stop the batch: every job still owed gets ``error``. Raises :class:`Halted`."""
        if self.fatal is None:
            self.fatal = error
        raise Halted

    # -- results -----------------------------------------------------------------

    async def ended(self, entry: Entry) -> None:
        """``entry``'s job is terminal: its result now, or in a delete batch its deletion next."""
        if self.deletable is None:
            await self.finish(entry)
        else:
            self.deletable.put_nowait(entry)

    async def finish(self, entry: Entry, error: FinetuneOpsError | None = None) -> None:
        """Give ``entry`` its result: ``error``, or its last record when that is None."""
        if entry.done:
            return
        entry.done = True
        self.owed -= 1
        self._drop(entry)
        result = CancelResult(
            job_id=entry.job_id,
            job=entry.job,
            error=error,
            cancel_sent=entry.accepted,
            deleted=entry.deleted,
            attempts=entry.attempts,
            elapsed=asyncio.get_running_loop().time() - self._started,
        )
        if self.state is not None:
            self.state.record_result(result)
        self.results.put_nowait(result)
        if error is not None or not self._emit.quiet:  # a failure is logged at INFO
            await self._emit(JobFinished(result=result))

    async def finish_rest(self) -> None:
        """After a halt: every job still owed gets the fatal error."""
        assert self.fatal is not None
        for entry in self._open():
            await self.finish(entry, self.fatal)

    async def expire(self) -> None:
        """At the deadline: every job still owed gets a WaitTimeoutError saying where it stood."""
        for entry in self._open():
            error = WaitTimeoutError(
                f"{entry.job_id}: {self._standing(entry)} when the deadline passed",
                job_id=entry.job_id,
                job=entry.job,
                cancel_in_doubt=self.cancelling and not entry.accepted and entry.attempts > 0,
            )
            error.__cause__ = entry.last_error
            await self.finish(entry, error)

    def _drop(self, entry: Entry) -> None:
        del self.entries[entry.job_id]
        if len(self.entries) < self._compact_below:
            self.entries = dict(self.entries)
            self._compact_below = len(self.entries) // 4

    def _open(self) -> list[Entry]:
        return list(self.entries.values())

    def _standing(self, entry: Entry) -> str:
        if self.deletable is not None and entry.job is not None and entry.job.is_terminal:
            return f"it had ended ({entry.job.status}) and was not deleted yet"
        if self.cancelling and not entry.accepted:
            if entry.attempts:
                return "its cancel request had no answer yet (it may have reached the server)"
            return "its cancel request was not sent yet"
        if entry.job is None:
            return "it was never seen"
        return f"it was still {str(entry.job.status)!r}"
