"""Tables for people: jobs, events, and the summary after a batch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from rich import box
from rich.table import Table
from rich.text import Text

from finetune_ops._records import FineTuneCheckpoint, FineTuneEvent, FineTuneJob, Progress
from finetune_ops._results import CancelResult

__all__ = [
    "age",
    "batch_summary",
    "checkpoints_table",
    "events_table",
    "job_rows",
    "remaining",
    "render_jobs",
]

_STATUS_STYLES = {
    "cancelled": "green",
    "completed": "green",
    "error": "red",
    "user_error": "red",
    "cancel_requested": "yellow",
}


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, shortly: ``42s ago``, ``5m ago``, ``3h ago``, ``12d ago``."""
    if moment is None:
        return "-"
    now = datetime.now(UTC) if now is None else now
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def remaining(progress: Progress | None) -> str:
    """The service's estimate of time left before the next stage, when it has one."""
    if progress is None or not progress.estimate_available or progress.seconds_remaining is None:
        return "-"
    seconds = progress.seconds_remaining
    if seconds >= 3600:
        return f"~{seconds / 3600:.1f}h left"
    if seconds >= 60:
        return f"~{seconds // 60}m left"
    return f"~{seconds}s left"


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column in {"id", "status", "updated", "created"})
    return table


_ANSI_STATUS = {"green": "\x1b[32m", "red": "\x1b[31m", "yellow": "\x1b[33m", "cyan": "\x1b[36m"}
_ANSI_RESET = "\x1b[0m"


def job_rows(jobs: Iterable[FineTuneJob], *, created: bool = False) -> list[list[str]]:
    """The cells of a jobs table, header first: id, status, model, (created,) updated, progress."""
    header = ["id", "status", "model", *(["created"] if created else []), "updated", "progress"]
    rows = [header]
    now = datetime.now(UTC)
    for job in jobs:
        row = [job.id, str(job.status), job.model or "-"]
        if created:
            row.append(age(job.created_at, now))
        row += [age(job.updated_at, now), remaining(job.progress)]
        rows.append(row)
    return rows


def render_jobs(rows: Sequence[Sequence[str]], *, color: bool) -> Iterator[str]:
    """Lines of a plain column layout, the status coloured when ``color``.

    Drawn by hand rather than with rich's Table: that measures every cell of
    every row, which took seconds for ten thousand jobs.
    """
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    last = len(widths) - 1

    def line(row: Sequence[str], *, header: bool = False) -> str:
        cells = []
        for column, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padded = cell if column == last else cell.ljust(width)
            if color and column == 1 and not header:
                style = _ANSI_STATUS[_STATUS_STYLES.get(cell, "cyan")]
                padded = f"{style}{padded}{_ANSI_RESET}"
            cells.append(padded)
        return "  ".join(cells).rstrip()

    yield line(rows[0], header=True)
    yield "  ".join("-" * width for width in widths)
    for row in rows[1:]:
        yield line(row)


def events_table(events: Iterable[FineTuneEvent]) -> Table:
    """One row per event: time (UTC), level, type, message."""
    table = _table("time (UTC)", "level", "type", "message")
    for event in events:
        when = "-"
        if event.created_at is not None:
            when = event.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        level = event.level or "-"
        style = "red" if level.lower() in {"error", "fatal"} else ""
        table.add_row(when, Text(level, style=style), event.type or "-", Text(event.message or ""))
    return table


def checkpoints_table(checkpoints: Iterable[FineTuneCheckpoint]) -> Table:
    """One row per checkpoint: step, time (UTC), type, path."""
    table = _table("step", "time (UTC)", "type", "path")
    for saved in checkpoints:
        when = "-"
        if saved.created_at is not None:
            when = saved.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        step = "-" if saved.step is None else str(saved.step)
        table.add_row(step, when, saved.checkpoint_type or "-", Text(saved.path or "-"))
    return table


def batch_summary(
    results: Sequence[CancelResult],
    *,
    total: int,
    skipped: int,
) -> Table:
    """Jobs per outcome (final status or error class), then the batch's totals."""
    table = _table("outcome", "jobs")
    table.columns[1].justify = "right"
    outcomes = Counter(
        str(result.status) if result.ok else type(result.error).__name__ for result in results
    )
    failed = {type(result.error).__name__ for result in results if not result.ok}
    for outcome, count in sorted(outcomes.items(), key=lambda item: (item[0] in failed, item[0])):
        style = "bold red" if outcome in failed else _STATUS_STYLES.get(outcome, "cyan")
        table.add_row(Text(outcome, style=style), str(count))
    if skipped:
        table.add_row(Text("done before (journal)", style="dim"), str(skipped))
    unfinished = total - len(results) - skipped
    if unfinished > 0:
        table.add_row(Text("no result (interrupted)", style="yellow"), str(unfinished))
    table.add_section()
    table.add_row(Text("total", style="bold"), str(total))
    return table
