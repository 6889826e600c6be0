"""What happened in a batch, by count: cancelled, already ended, still cancelling, failed.

Each result falls in one category (:func:`outcome`), with a detail for the
table: the status a job had already ended in, or why it failed. ``cancel`` and
``wait`` name their categories differently: a cancel is about whether the job
was stopped, a wait about how the job ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

import attrs
from rich import box
from rich.table import Table
from rich.text import Text

from finetune_ops._records import JobStatus
from finetune_ops._results import CancelResult

__all__ = ["Summary", "is_failure", "outcome"]

CANCELLED = "cancelled"
DELETED = "deleted"
ALREADY_ENDED = "already ended"
STILL_CANCELLING = "still cancelling"
FAILED = "failed"
DONE_BEFORE = "done before (journal)"
NO_RESULT = "no result"

_STYLES = {
    CANCELLED: "green",
    DELETED: "green",
    "completed": "green",
    ALREADY_ENDED: "green",
    STILL_CANCELLING: "yellow",
    FAILED: "bold red",
    DONE_BEFORE: "dim",
    NO_RESULT: "yellow",
}


def is_failure(result: CancelResult, fail_on: Collection[str]) -> bool:
    """Whether the job did not end as asked: an error, or an end in a ``--fail-on`` status."""
    return not result.ok or (result.status is not None and str(result.status) in fail_on)


def outcome(
    result: CancelResult, *, cancel: bool, fail_on: Collection[str], delete: bool = False
) -> tuple[str, str]:
    """The result's (category, detail)."""
    status = None if result.status is None else str(result.status)
    if not result.ok:
        return FAILED, type(result.error).__name__
    if delete:
        return DELETED, "" if status is None else f"was {status}"
    assert status is not None
    if status in fail_on:
        return FAILED, f"ended {status}"
    if not cancel:
        return status, ""
    if not JobStatus(status).is_terminal:
        return STILL_CANCELLING, status
    if status == CANCELLED and result.cancel_sent:
        return CANCELLED, ""
    return ALREADY_ENDED, status


_ORDER = (DELETED, CANCELLED, ALREADY_ENDED, STILL_CANCELLING)


def _rank(category: str) -> tuple[bool, int, str]:
    # The cancel categories in a fixed order, then the wait statuses, failures last.
    position = _ORDER.index(category) if category in _ORDER else len(_ORDER)
    return category == FAILED, position, category


@attrs.define
class Summary:
    """Counts of a batch's results by category and detail, with the jobs that had none."""

    cancel: bool
    fail_on: frozenset[str]
    delete: bool = False
    total: int = 0
    skipped: int = 0
    #: Jobs the journal had as done, whose final status is one of ``fail_on``.
    skipped_failed: int = 0
    counts: Counter[tuple[str, str]] = attrs.Factory(Counter)

    def add(self, result: CancelResult) -> None:
        self.counts[
            outcome(result, cancel=self.cancel, fail_on=self.fail_on, delete=self.delete)
        ] += 1

    @property
    def results(self) -> int:
        return sum(self.counts.values())

    @property
    def unfinished(self) -> int:
        return max(0, self.total - self.skipped - self.results)

    def by_category(self) -> list[tuple[str, int]]:
        totals: Counter[str] = Counter()
        for (category, _), count in self.counts.items():
            totals[category] += count
        parts = [(name, totals[name]) for name in sorted(totals, key=_rank)]
        if self.skipped:
            parts.append((DONE_BEFORE, self.skipped))
        if self.unfinished:
            parts.append((NO_RESULT, self.unfinished))
        return parts

    def line(self) -> str:
        """``10 jobs: cancelled 3, already ended 1, failed 2, no result 4``."""
        shown = ", ".join(f"{name} {count}" for name, count in self.by_category())
        return f"{self.total} jobs: {shown or 'nothing done'}"

    def table(self) -> Table:
        """One row per category and detail, then the total."""
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("outcome", no_wrap=True)
        table.add_column("jobs", justify="right")
        for category, _total in self.by_category():
            details = sorted(
                (detail, count) for (name, detail), count in self.counts.items() if name == category
            )
            style = _STYLES.get(category, "cyan")
            if category in (DONE_BEFORE, NO_RESULT):
                table.add_row(Text(category, style=style), str(_total))
                continue
            for detail, count in details:
                label = f"{category} ({detail})" if detail else category
                table.add_row(Text(label, style=style), str(count))
        table.add_section()
        table.add_row(Text("total", style="bold"), str(self.total))
        return table
