"""Progress of a batch: counts per state, shown as a live bar or as plain periodic lines.

On a terminal, stderr gets a rich progress bar with the count of jobs in each
state; elsewhere (a log file, CI), a plain line now and then. Both are driven
by one ticker task on the event loop, so nothing renders from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from finetune_ops._results import CancelResult

__all__ = ["Display", "LiveBar", "PlainLines", "Silent", "Tracker", "showing"]

FAILED = "failed"
_GOOD = frozenset({"cancelled", "completed"})


class Tracker:
    """Where every job of a batch stands: its latest status, or its outcome once done."""

    def __init__(self, total: int, *, unseen: str = "not seen yet") -> None:
        self.total = total
        #: The label for jobs without a result whose status has not been seen yet.
        self.unseen = unseen
        #: Outcomes of finished jobs: the final status of ok ones, else "failed".
        self.outcomes: Counter[str] = Counter()
        #: Latest status of each job seen but not finished.
        self._latest: dict[str, str] = {}
        self._finished: set[str] = set()
        #: Retried requests, by the class name of the error that caused the retry.
        self.retries: Counter[str] = Counter()
        #: While the API throttles: the pace and why ("paced at 70/s: ..."), else None.
        self.throttle: str | None = None
        #: Bumped on every change, so a display can tell whether anything moved.
        self.version = 0

    @property
    def done(self) -> int:
        return len(self._finished)

    def seen(self, job_id: str, status: str) -> None:
        if job_id not in self._finished:
            self._latest[job_id] = status
            self.version += 1

    def finished(self, result: CancelResult) -> None:
        if result.job_id in self._finished:
            return
        self._finished.add(result.job_id)
        self._latest.pop(result.job_id, None)
        self.outcomes[str(result.status) if result.ok else FAILED] += 1
        self.version += 1

    def retried(self, cause: BaseException) -> None:
        self.retries[type(cause).__name__] += 1
        self.version += 1

    def paced(self, rate: float | None, reason: str) -> None:
        """The manager's rate gate changed: say so while it holds requests back."""
        if rate is None:
            self.throttle = None
        elif rate == 0:
            self.throttle = f"holding requests: {reason}"
        else:
            self.throttle = f"paced at {rate:.0f}/s: {reason}"
        self.version += 1

    def parts(self) -> list[tuple[str, int, str]]:
        """(label, count, rich style) for each state with jobs in it, outcomes first."""
        parts = [
            (label, count, _outcome_style(label))
            for label, count in sorted(self.outcomes.items(), key=_failed_last)
        ]
        in_flight = Counter(self._latest.values())
        parts += [(label, count, "cyan") for label, count in sorted(in_flight.items())]
        unseen = self.total - self.done - len(self._latest)
        if unseen > 0:
            parts.append((self.unseen, unseen, "dim"))
        return parts

    def summary(self) -> str:
        """The states as plain text: ``cancelled 12, failed 1, cancel_requested 30``."""
        return ", ".join(f"{label} {count}" for label, count, _ in self.parts())


def _failed_last(item: tuple[str, int]) -> tuple[bool, str]:
    return item[0] == FAILED, item[0]


def _outcome_style(label: str) -> str:
    if label == FAILED:
        return "bold red"
    return "green" if label in _GOOD else "yellow"


class Display(Protocol):
    """Something that shows a tracker's progress, refreshed every ``period`` seconds."""

    period: float

    def start(self) -> None: ...
    def refresh(self) -> None: ...
    def stop(self) -> None: ...


class Silent:
    """Shows nothing (``--quiet``)."""

    period = 3600.0

    def start(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _StatesColumn(ProgressColumn):
    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self._tracker = tracker

    def render(self, task: Task) -> Text:
        text = Text()
        for index, (label, count, style) in enumerate(self._tracker.parts()):
            if index:
                text.append(" · ", style="dim")
            text.append(f"{label} {count}", style=style)
        if self._tracker.throttle:
            text.append(f"  ({self._tracker.throttle})", style="yellow")
        return text


class LiveBar:
    """A rich progress bar on a terminal, with the count of jobs in each state."""

    period = 0.1

    def __init__(self, tracker: Tracker, title: str, console: Console) -> None:
        self._tracker = tracker
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _StatesColumn(tracker),
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(title, total=tracker.total, start=False)

    def start(self) -> None:
        self._progress.start()
        self._progress.start_task(self._task)

    def refresh(self) -> None:
        self._progress.update(self._task, completed=self._tracker.done)
        self._progress.refresh()

    def stop(self) -> None:
        self.refresh()
        self._progress.stop_task(self._task)
        self._progress.stop()


class PlainLines:
    """A line on stderr when something changed (at most every ``period`` seconds).

    With nothing changing, a line still comes every ``heartbeat`` seconds, so a
    log shows that the command is alive.
    """

    def __init__(
        self, tracker: Tracker, title: str, console: Console, *, period: float = 2.0
    ) -> None:
        self.period = period
        self.heartbeat = 30.0
        self._tracker = tracker
        self._title = title
        self._console = console
        self._start = time.monotonic()
        self._shown_version = -1
        self._shown_at = self._start

    def _line(self) -> None:
        tracker = self._tracker
        seconds = time.monotonic() - self._start
        throttle = f"; {tracker.throttle}" if tracker.throttle else ""
        self._console.print(
            f"{self._title}: {tracker.done}/{tracker.total} done "
            f"({tracker.summary() or 'nothing yet'}){throttle} [{seconds:.1f}s]",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        self._shown_version = tracker.version
        self._shown_at = time.monotonic()

    def start(self) -> None:
        self._start = time.monotonic()
        self._console.print(
            f"{self._title}: {self._tracker.total} jobs", markup=False, highlight=False
        )
        self._shown_version = self._tracker.version
        self._shown_at = self._start

    def refresh(self) -> None:
        changed = self._tracker.version != self._shown_version
        if changed or time.monotonic() - self._shown_at >= self.heartbeat:
            self._line()

    def stop(self) -> None:
        self._line()


@contextlib.asynccontextmanager
async def showing(display: Display) -> AsyncIterator[None]:
    """Start ``display``, refresh it from a ticker task while the block runs, then stop it."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(display.period)
            display.refresh()

    display.start()
    ticker = asyncio.create_task(tick(), name="finetune-ops progress")
    try:
        yield
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        display.stop()
