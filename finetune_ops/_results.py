"""What a batch hands back: one CancelResult per job, and a CancelReport over them all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import attrs

from ._errors import FinetuneOpsError
from ._records import FineTuneJob, JobStatus

__all__ = ["CancelReport", "CancelResult"]


@attrs.frozen(kw_only=True)
class CancelResult:
    """The outcome for one job of a batch.

    - ``job``: the last record seen (for a timeout, the record that was not yet terminal).
    - ``error``: why the job did not end as asked, or ``None`` when it did.
    - ``cancel_sent``: whether the API accepted a cancel request for this job;
      ``False`` for a job that was already terminal, or when only waiting.
    - ``deleted``: whether the job is gone, in a delete batch (the API confirmed
      the deletion, or the job vanished under it).
    - ``attempts``: HTTP attempts spent on this job alone, retries included
      (list requests shared by the whole batch are not counted).
    - ``elapsed``: seconds from the start of the call until this result.
    """

    job_id: str
    job: FineTuneJob | None = None
    error: FinetuneOpsError | None = None
    cancel_sent: bool = False
    deleted: bool = False
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the job ended as asked."""
        return self.error is None

    @property
    def status(self) -> JobStatus | None:
        """The status of the last record seen, if any."""
        return self.job.status if self.job is not None else None


def _outcome(result: CancelResult) -> str:
    return str(result.status) if result.ok else type(result.error).__name__


@attrs.frozen
class CancelReport:
    """Every result of a batch, in the order the ids were given (duplicates collapsed)."""

    results: tuple[CancelResult, ...]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[CancelResult]:
        return iter(self.results)

    @property
    def ok(self) -> tuple[CancelResult, ...]:
        """The jobs that ended as asked."""
        return tuple(result for result in self.results if result.ok)

    @property
    def failed(self) -> tuple[CancelResult, ...]:
        """The jobs that did not, each with its error."""
        return tuple(result for result in self.results if not result.ok)

    @property
    def all_ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def by_status(self) -> dict[str, int]:
        """How many jobs that ended as asked are in each final status."""
        return dict(Counter(str(result.status) for result in self.results if result.ok))

    @property
    def by_error(self) -> dict[str, int]:
        """How many failed jobs failed with each error class."""
        return dict(
            Counter(type(result.error).__name__ for result in self.results if not result.ok)
        )

    @property
    def by_outcome(self) -> dict[str, int]:
        """Final statuses and error classes together: one count per outcome."""
        return dict(Counter(_outcome(result) for result in self.results))

    def raise_for_failures(self) -> None:
        """Raise an ExceptionGroup of the failures' errors, if there are any."""
        failed = self.failed
        if not failed:
            return
        shown = ", ".join(result.job_id for result in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        errors: dict[int, FinetuneOpsError] = {}
        for result in failed:
            assert result.error is not None
            errors.setdefault(id(result.error), result.error)  # a fatal error is shared
        raise ExceptionGroup(
            f"{len(failed)} of {len(self.results)} jobs failed: {shown}{more}",
            list(errors.values()),
        )
