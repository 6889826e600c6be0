"""Running a batch for the command line: each fact is journaled, printed and counted as it
happens, and a signal or a closed stdout stops the batch without losing what had happened.

Facts are taken from the manager's events rather than from the returned
report: ``CancelAccepted`` arrives the moment the API accepts a cancel, and
``JobFinished`` the moment a job has its result, also for jobs whose result is
still queued when the batch is interrupted.
"""

from __future__ import annotations

import asyncio
import errno
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from rich.console import Console

from finetune_ops._converter import unstructure
from finetune_ops._errors import AuthenticationError
from finetune_ops._events import CancelAccepted, Event, JobFinished, StatusChanged
from finetune_ops._gate import RateChanged
from finetune_ops._manager import JobManager
from finetune_ops._policies import DEFAULT_POLL, DEFAULT_RETRY, PollPolicy, RetryPolicy
from finetune_ops._results import CancelResult
from finetune_ops._retry import RetryEvent
from finetune_ops._state import BatchState

from . import _signals
from ._config import Connection
from ._exit import Exit
from ._formats import RecordWriter
from ._journal import Journal, JournalError
from ._output import (
    MAX_LISTED,
    describe_error,
    note,
    report_failures,
    result_record,
    silence_stdout,
    stdout_console,
)
from ._progress import Display, LiveBar, PlainLines, Silent, Tracker, showing
from ._summary import Summary, is_failure

__all__ = [
    "CLI_POLL",
    "DELETE_COLUMNS",
    "RESULT_COLUMNS",
    "Plan",
    "Sink",
    "Work",
    "choose_display",
    "drive",
    "execute",
]

#: Polling for the command line: the library's, but never more than 10 s between looks.
CLI_POLL = attrs.evolve(DEFAULT_POLL, max_interval=10.0)

#: The columns of ``-o csv`` for batch results.
RESULT_COLUMNS = ("job_id", "ok", "status", "cancel_sent", "attempts", "elapsed", "error")
#: The columns of ``-o csv`` for delete results: those of a cancel, and whether the job is gone.
DELETE_COLUMNS = (*RESULT_COLUMNS, "deleted")


@attrs.frozen(kw_only=True)
class Plan:
    """What to do with every job of a batch, and how hard to push."""

    cancel: bool
    wait: bool
    #: Delete each job (after cancelling it first when ``cancel``).
    delete: bool = False
    timeout: float | None = None
    concurrency: int = 32
    poll: PollPolicy = CLI_POLL
    retry: RetryPolicy = DEFAULT_RETRY
    #: Terminal statuses that count as failures (``wait --fail-on``).
    fail_on: frozenset[str] = frozenset()

    @property
    def title(self) -> str:
        if self.delete:
            return "Deleting (cancelling active jobs first)" if self.cancel else "Deleting"
        if self.cancel:
            return "Cancelling" if not self.wait else "Cancelling (waiting until done)"
        return "Waiting"

    @property
    def unseen(self) -> str:
        """What a job is waiting for before its status is first seen."""
        return "to send" if self.sends else "to check"

    @property
    def sends(self) -> bool:
        """Whether the batch sends a request that changes jobs (a cancel, a delete)."""
        return self.cancel or self.delete

    @property
    def verb(self) -> str:
        """The action in the command's messages: delete, cancel or wait."""
        return "delete" if self.delete else "cancel" if self.cancel else "wait"


@attrs.frozen(kw_only=True)
class Work:
    """A batch's ids by what is left to do: send a cancel (then maybe wait), or only wait."""

    send: Sequence[str] = ()
    wait: Sequence[str] = ()
    #: A journaled run's state of these ids: the batch resumes from it and keeps it current.
    state: BatchState | None = None

    def __len__(self) -> int:
        return len(self.send) + len(self.wait)

    def start(self, jobs: JobManager, plan: Plan) -> Coroutine[Any, Any, object]:
        """The manager call that does this work."""
        if plan.delete:
            return jobs.delete_many(self.send, cancel_first=plan.cancel, timeout=plan.timeout)
        if self.state is not None:
            # The deadline counts from now (not from when the journal was read), and
            # defaults as a batch's does: the poll policy's when waiting, else none.
            timeout = plan.timeout
            if timeout is None and plan.wait:
                timeout = plan.poll.timeout
            now = datetime.now(UTC)
            self.state.deadline = None if timeout is None else now + timedelta(seconds=timeout)
            if plan.cancel:
                return jobs.cancel_many(state=self.state, wait=plan.wait)
            return jobs.wait_many(state=self.state)
        ids = [*self.send, *self.wait]
        if plan.cancel:
            return jobs.cancel_many(ids, wait=plan.wait, timeout=plan.timeout)
        return jobs.wait_many(ids, timeout=plan.timeout)


class Sink:
    """Hears a batch's events: journals, prints and counts each fact as it happens.

    It never raises into the manager: the first error it meets (a full disk, a
    closed stdout) is kept in ``error`` and ``stop`` is called to end the batch.
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        journal: Journal | None,
        writer: RecordWriter | None,
        delete: bool = False,
    ) -> None:
        self.tracker = tracker
        self.results: list[CancelResult] = []
        self.error: Exception | None = None
        self.stop: Callable[[], object] | None = None
        self._journal = journal
        self._writer = writer
        self._delete = delete

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            return
        try:
            if isinstance(event, CancelAccepted):
                if self._journal is not None:
                    status = None if event.job is None else str(event.job.status)
                    self._journal.accepted(event.job_id, status)
            elif isinstance(event, JobFinished):
                self._finished(event.result)
            elif isinstance(event, StatusChanged):
                self.tracker.seen(event.job_id, str(event.status))
            elif isinstance(event, RetryEvent):
                self.tracker.retried(event.cause)
            elif isinstance(event, RateChanged):
                self.tracker.paced(event.rate, event.reason)
        except Exception as error:
            self.error = error
            if self.stop is not None:
                self.stop()

    def _finished(self, result: CancelResult) -> None:
        self.results.append(result)
        self.tracker.finished(result)
        if self._journal is not None:
            job = None
            if self._journal.records and result.job is not None:
                job = unstructure(result.job)
            self._journal.result(result, job)
        if self._writer is not None:
            self._writer.write(result_record(result, deleted=self._delete))


def choose_display(tracker: Tracker, title: str, *, quiet: bool, json_output: bool) -> Display:
    """A live bar when stderr is a terminal (and not sharing it with JSON), else plain lines."""
    if quiet:
        return Silent()
    console = Console(stderr=True)
    json_on_terminal = json_output and sys.stdout.isatty()
    if console.is_terminal and not json_on_terminal:
        return LiveBar(tracker, title, console)
    return PlainLines(tracker, title, console)


async def drive(
    connection: Connection,
    work: Work,
    plan: Plan,
    sink: Sink,
    display: Display,
) -> None:
    """Run the batch; facts reach ``sink`` as they happen.

    Cancels go out for ``work.send``; ``work.wait`` is only watched, in the same
    batch. Raises the sink's error if it had one, and CancelledError if this
    task is cancelled (the batch stops and every request in flight is abandoned).
    """
    async with (
        showing(display),
        JobManager(
            api_key=connection.api_key,
            base_url=connection.base_url,
            allow_insecure_http=connection.allow_insecure_http,
            max_concurrency=plan.concurrency,
            retry=plan.retry,
            poll=plan.poll,
            on_event=sink,
        ) as jobs,
    ):
        batch = asyncio.create_task(work.start(jobs, plan), name="finetune-ops batch")
        sink.stop = batch.cancel
        try:
            await batch
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if sink.error is None or (current is not None and current.cancelling()):
                raise
    if sink.error is not None:
        raise sink.error


def execute(
    connection: Connection,
    work: Work,
    plan: Plan,
    *,
    summary: Summary,
    journal: Journal | None,
    writer: RecordWriter | None,
    quiet: bool,
) -> Exit:
    """Run a batch command end to end: run, close the journal, report, pick the exit status."""
    tracker = Tracker(len(work), unseen=plan.unseen)
    sink = Sink(
        tracker,
        journal=journal,
        writer=writer,
        delete=plan.delete,
    )
    signum: int | None = None
    start = time.monotonic()
    try:
        if work:
            json_output = writer is not None
            display = choose_display(tracker, plan.title, quiet=quiet, json_output=json_output)
            try:
                signum = _signals.run(drive(connection, work, plan, sink, display))
            except Exception as raised:
                if raised is not sink.error:
                    raise
    finally:
        if journal is not None:
            try:
                journal.close()
            except JournalError as error:
                sink.error = sink.error or error
    for result in sink.results:
        summary.add(result)
    return report(
        summary,
        plan,
        sink.results,
        retries=sum(tracker.retries.values()),
        elapsed=time.monotonic() - start,
        writer=writer,
        unfinished=_unfinished(work, sink.results),
        signum=signum,
        error=sink.error,
        resumable=journal is not None,
    )


def _unfinished(work: Work, results: Sequence[CancelResult]) -> list[str]:
    finished = {result.job_id for result in results}
    return [job_id for ids in (work.send, work.wait) for job_id in ids if job_id not in finished]


def _is_broken_pipe(error: BaseException | None) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.EPIPE, errno.ECONNRESET)


def report(
    summary: Summary,
    plan: Plan,
    results: Sequence[CancelResult],
    *,
    retries: int,
    elapsed: float,
    writer: RecordWriter | None,
    unfinished: Sequence[str],
    signum: int | None,
    error: BaseException | None,
    resumable: bool,
) -> Exit:
    """Summarize a batch and return its exit status.

    The summary is a table on stdout, or one line on stderr when stdout holds
    machine output or is gone. Failures, and jobs left without a result, are
    listed on stderr.
    """
    timing = f"{elapsed:.1f}s, {retries} requests retried"
    stdout_broken = isinstance(error, OSError)  # the journal's failures are JournalError
    if stdout_broken:
        silence_stdout()  # the results could not be written: neither can the summary
    else:
        try:
            if writer is not None:
                writer.close()
            else:
                console = stdout_console()
                console.print(summary.table())
                console.print(f"{summary.line()} ({timing}).", highlight=False)
        except OSError as failure:  # a closed pipe, a full disk
            silence_stdout()
            stdout_broken, error = True, error or failure
    if writer is not None or stdout_broken:
        note(f"{summary.line()} ({timing})")
    stdout_closed = _is_broken_pipe(error)
    failed = [result for result in results if is_failure(result, plan.fail_on)]
    report_failures(failed, summary.total, fail_on=plan.fail_on)
    if signum is not None or stdout_closed:
        for job_id in unfinished[:MAX_LISTED]:
            note(f"no result: {job_id}")
        if len(unfinished) > MAX_LISTED:
            note(f"... and {len(unfinished) - MAX_LISTED} more")
        why = "stdout was closed" if signum is None else "Interrupted"
        note(f"{why}: {len(unfinished)} of {summary.total} jobs have no result.")
        if resumable and unfinished:
            note("Run the same command with the same --journal to go on where this one stopped.")
        return Exit.STDOUT_CLOSED if signum is None else Exit.for_signal(signum)
    if error is not None:
        if isinstance(error, OSError):
            shown = f"cannot write to stdout: {error.strerror or error}"
        else:
            shown = str(error) if isinstance(error, JournalError) else describe_error(error)
        note(f"error: stopped early: {shown}")
        if unfinished:
            note(f"{len(unfinished)} of {summary.total} jobs have no result.")
        return Exit.FAILED
    if any(isinstance(result.error, AuthenticationError) for result in failed):
        return Exit.REFUSED
    return Exit.FAILED if failed or summary.skipped_failed else Exit.OK
