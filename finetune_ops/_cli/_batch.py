"""Running a batch for the command line: each result is journaled, printed and counted as it
completes, and a Ctrl-C stops the batch without losing what had finished.

Results are taken from the manager's ``JobFinished`` events rather than from the
returned report: an event is delivered the moment a job has its result, also
for jobs whose result is still queued when the batch is interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import attrs
from rich.console import Console

from finetune_ops._events import Event, JobFinished, StatusChanged
from finetune_ops._manager import JobManager
from finetune_ops._policies import DEFAULT_POLL, DEFAULT_RETRY, PollPolicy, RetryPolicy
from finetune_ops._results import CancelResult
from finetune_ops._retry import RetryEvent

from ._config import Connection
from ._exit import Exit
from ._journal import Journal
from ._output import (
    MAX_LISTED,
    describe_error,
    echo_json,
    note,
    report_failures,
    result_record,
    stdout_console,
)
from ._progress import Display, LiveBar, PlainLines, Silent, Tracker, showing
from ._tables import batch_summary

__all__ = [
    "CLI_POLL",
    "Plan",
    "Sink",
    "choose_display",
    "drive",
    "execute",
    "report",
    "run_until_interrupted",
]

#: Polling for the command line: the library's, but never more than 10 s between looks.
CLI_POLL = attrs.evolve(DEFAULT_POLL, max_interval=10.0)


@attrs.frozen(kw_only=True)
class Plan:
    """What to do with every job of a batch, and how hard to push."""

    cancel: bool
    wait: bool
    timeout: float | None = None
    concurrency: int = 32
    poll: PollPolicy = CLI_POLL
    retry: RetryPolicy = DEFAULT_RETRY

    @property
    def title(self) -> str:
        if self.cancel:
            return "Cancelling" if not self.wait else "Cancelling (waiting until done)"
        return "Waiting"

    @property
    def unseen(self) -> str:
        """What a job is waiting for before its status is first seen."""
        return "to send" if self.cancel else "to check"


class Sink:
    """Hears a batch's events: journals, prints and counts each result as it completes.

    It never raises into the manager: the first error it meets (a full disk, a
    closed stdout) is kept in ``error`` and ``stop`` is called to end the batch.
    """

    def __init__(self, tracker: Tracker, *, journal: Journal | None, json_output: bool) -> None:
        self.tracker = tracker
        self.results: list[CancelResult] = []
        self.error: Exception | None = None
        self.stop: Callable[[], object] | None = None
        self._journal = journal
        self._json = json_output

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            return
        try:
            if isinstance(event, JobFinished):
                self._finished(event.result)
            elif isinstance(event, StatusChanged):
                self.tracker.seen(event.job_id, str(event.status))
            elif isinstance(event, RetryEvent):
                self.tracker.retried(event.cause)
        except Exception as error:
            self.error = error
            if self.stop is not None:
                self.stop()

    def _finished(self, result: CancelResult) -> None:
        record = result_record(result)
        if self._journal is not None:
            self._journal.append(record)
        self.results.append(result)
        self.tracker.finished(result)
        if self._json:
            echo_json(record)


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
    ids: Sequence[str],
    plan: Plan,
    sink: Sink,
    display: Display,
) -> None:
    """Run the batch; results reach ``sink`` as they complete.

    Raises the sink's error if it had one, and CancelledError if this task is
    cancelled (the batch stops and every request in flight is abandoned).
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
        if plan.cancel:
            work = jobs.cancel_many(ids, wait=plan.wait, timeout=plan.timeout)
        else:
            work = jobs.wait_many(ids, timeout=plan.timeout)
        batch = asyncio.create_task(work, name="finetune-ops batch")
        sink.stop = batch.cancel
        try:
            await batch
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if sink.error is None or (current is not None and current.cancelling()):
                raise
    if sink.error is not None:
        raise sink.error


def run_until_interrupted(main: Coroutine[Any, Any, None]) -> bool:
    """``asyncio.run(main)``; return whether Ctrl-C stopped it.

    On Ctrl-C, asyncio cancels ``main``, which lets the batch wind down and
    close its connections; the KeyboardInterrupt asyncio raises afterwards is
    turned into the return value here.
    """
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        return True
    return False


def execute(
    connection: Connection,
    ids: Sequence[str],
    plan: Plan,
    *,
    journal: Journal | None,
    json_output: bool,
    quiet: bool,
) -> Exit:
    """Run a batch command end to end: skip what the journal has, run, report, pick the exit."""
    todo = list(ids)
    skipped = 0
    if journal is not None:
        if journal.unreadable:
            lines = ", ".join(map(str, journal.unreadable[:10]))
            note(f"warning: journal {str(journal.path)!r}: ignored unreadable lines {lines}")
        done = journal.done(wait=plan.wait)
        todo = [job_id for job_id in ids if job_id not in done]
        skipped = len(ids) - len(todo)
        if skipped:
            note(f"journal: {skipped} of {len(ids)} jobs already done; skipping them")
    tracker = Tracker(len(todo), unseen=plan.unseen)
    sink = Sink(tracker, journal=journal, json_output=json_output)
    interrupted, error = False, None
    start = time.monotonic()
    if todo:
        display = choose_display(tracker, plan.title, quiet=quiet, json_output=json_output)
        with journal if journal is not None else contextlib.nullcontext():
            try:
                interrupted = run_until_interrupted(drive(connection, todo, plan, sink, display))
            except Exception as raised:
                if raised is not sink.error or _is_broken_pipe(raised):
                    raise
                error = raised
    elapsed = time.monotonic() - start
    finished = {result.job_id for result in sink.results}
    return report(
        sink.results,
        total=len(ids),
        skipped=skipped,
        retries=sum(tracker.retries.values()),
        elapsed=elapsed,
        json_output=json_output,
        unfinished=[job_id for job_id in todo if job_id not in finished],
        interrupted=interrupted,
        error=error,
        resumable=journal is not None,
    )


def _is_broken_pipe(error: BaseException) -> bool:
    # click turns a broken stdout pipe into a quiet exit; let it.
    return isinstance(error, OSError) and error.errno == errno.EPIPE


def report(
    results: Sequence[CancelResult],
    *,
    total: int,
    skipped: int,
    retries: int,
    elapsed: float,
    json_output: bool,
    unfinished: Sequence[str] = (),
    interrupted: bool = False,
    error: BaseException | None = None,
    resumable: bool = False,
) -> Exit:
    """Summarize a batch (a table on stdout, or one line on stderr with ``--json``).

    Failures, and jobs left without a result, are listed on stderr. Returns the exit status.
    """
    failed = [result for result in results if not result.ok]
    timing = f"{elapsed:.1f}s, {retries} requests retried"
    if json_output:
        outcomes = Counter(str(result.status) if result.ok else "failed" for result in results)
        shown = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
        extra = f", {skipped} done before" if skipped else ""
        note(f"{len(results)} of {total} jobs: {shown or 'none'}{extra} ({timing})")
    else:
        console = stdout_console()
        console.print(batch_summary(results, total=total, skipped=skipped))
        console.print(f"{len(results)} of {total} jobs finished here ({timing}).", highlight=False)
    report_failures(failed, total)
    if interrupted:
        for job_id in unfinished[:MAX_LISTED]:
            note(f"no result: {job_id}")
        if len(unfinished) > MAX_LISTED:
            note(f"... and {len(unfinished) - MAX_LISTED} more")
        note(f"Interrupted: {len(unfinished)} of {total} jobs have no result.")
        if resumable:
            note("Run the same command with the same --journal to go on where this one stopped.")
        return Exit.INTERRUPTED
    if error is not None:
        note(f"error: stopped early: {describe_error(error)}")
        return Exit.FAILED
    return Exit.FAILED if failed else Exit.OK
