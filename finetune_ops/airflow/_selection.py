"""Choosing jobs from the account's list by status, as the CLI's ``--status`` and ``--all-active``.

Kept apart from the CLI's selectors, which are click types: the ``airflow``
extra does not bring click's options along.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from finetune_ops._records import KNOWN_STATUSES, FineTuneJob

__all__ = ["check_statuses", "select"]


def check_statuses(statuses: Collection[str]) -> frozenset[str]:
    """The statuses, lower-cased; ValueError naming the valid ones for a typo."""
    if isinstance(statuses, str):
        statuses = [statuses]
    wanted = frozenset(str(status).strip().lower() for status in statuses)
    unknown = sorted(wanted - KNOWN_STATUSES)
    if unknown:
        valid = ", ".join(sorted(KNOWN_STATUSES))
        raise ValueError(f"{unknown[0]!r} is not a job status; choose from {valid}")
    return wanted


def select(
    jobs: Iterable[FineTuneJob],
    *,
    statuses: frozenset[str] = frozenset(),
    all_active: bool = False,
    model: str | None = None,
    suffix: str | None = None,
) -> list[str]:
    """Ids of the jobs kept, in list order: any of ``statuses``, or every job not ended."""
    kept = []
    for job in jobs:
        if all_active and job.is_terminal:
            continue
        if statuses and job.status.lower() not in statuses:
            continue
        if model is not None and job.model != model:
            continue
        if suffix is not None and job.suffix != suffix:
            continue
        kept.append(job.id)
    return kept
