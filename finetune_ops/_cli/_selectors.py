"""Choosing jobs from the account's list (by status, model, creation time and suffix), and
which terminal statuses count as failures (``--fail-on``).

``--status`` takes only statuses the library knows, so a typo (``runing``) is a
usage error naming the valid ones rather than an empty selection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

import attrs
import click

from finetune_ops._records import KNOWN_STATUSES, TERMINAL_STATUSES, FineTuneJob

from ._times import MOMENT

__all__ = ["FAIL_ON", "STATUS", "Selector", "newest_first", "selector_from", "selector_options"]

F = TypeVar("F", bound=Callable[..., object])


class Status(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """A job status the library knows, in any case."""

    name = "status"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value).strip().lower()
        if text not in KNOWN_STATUSES:
            valid = ", ".join(sorted(KNOWN_STATUSES))
            self.fail(f"{value!r} is not a job status; choose from {valid}", param, ctx)
        return text


STATUS = Status()


class FailOn(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """Comma-separated terminal statuses, or ``none``."""

    name = "statuses"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> frozenset[str]:
        if isinstance(value, frozenset):
            return value
        parts = {part.strip().lower() for part in str(value).split(",") if part.strip()}
        if parts <= {"none"}:
            return frozenset()
        terminal = {str(status) for status in TERMINAL_STATUSES}
        unknown = sorted(parts - terminal)
        if unknown:
            valid = ", ".join(sorted(terminal))
            message = f"{unknown[0]!r} is not a terminal status; choose from {valid}, or none"
            self.fail(message, param, ctx)
        return frozenset(parts)


FAIL_ON = FailOn()


@attrs.frozen(kw_only=True)
class Selector:
    """Which of the account's jobs to keep; an empty selector keeps them all."""

    statuses: frozenset[str] = frozenset()
    model: str | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    suffix: str | None = None

    def __bool__(self) -> bool:
        return bool(self.statuses) or any(
            value is not None
            for value in (self.model, self.created_before, self.created_after, self.suffix)
        )

    def matches(self, job: FineTuneJob) -> bool:
        if self.statuses and job.status.lower() not in self.statuses:
            return False
        if self.model is not None and job.model != self.model:
            return False
        if self.suffix is not None and job.suffix != self.suffix:
            return False
        if self.created_before is not None or self.created_after is not None:
            created = job.created_at
            if created is None:
                return False
            if self.created_before is not None and not created < self.created_before:
                return False
            if self.created_after is not None and not created > self.created_after:
                return False
        return True

    def select(self, jobs: Iterable[FineTuneJob]) -> list[FineTuneJob]:
        return [job for job in jobs if self.matches(job)]


def newest_first(jobs: Iterable[FineTuneJob]) -> list[FineTuneJob]:
    """Jobs by creation time, newest first; jobs without one last, in list order."""
    jobs = list(jobs)
    dated = [job for job in jobs if job.created_at is not None]
    dated.sort(key=_created, reverse=True)
    return dated + [job for job in jobs if job.created_at is None]


def _created(job: FineTuneJob) -> datetime:
    assert job.created_at is not None
    return job.created_at


def selector_options(command: F) -> F:
    """Add ``--status``, ``--model``, ``--created-before/--created-after`` and ``--suffix``."""
    options = (
        click.option(
            "--status",
            "statuses",
            type=STATUS,
            multiple=True,
            metavar="STATUS",
            help="Only jobs in this status (repeatable): "
            + ", ".join(sorted(KNOWN_STATUSES))
            + ".",
        ),
        click.option("--model", metavar="NAME", help="Only jobs of this base model."),
        click.option(
            "--created-before",
            type=MOMENT,
            metavar="TIME",
            help="Only jobs created before TIME: a duration ago (2h, 3d) or a date (2026-12-01).",
        ),
        click.option(
            "--created-after",
            type=MOMENT,
            metavar="TIME",
            help="Only jobs created after TIME (same forms as --created-before).",
        ),
        click.option("--suffix", metavar="TEXT", help="Only jobs created with this suffix."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def selector_from(
    statuses: tuple[str, ...],
    model: str | None,
    created_before: datetime | None,
    created_after: datetime | None,
    suffix: str | None,
) -> Selector:
    return Selector(
        statuses=frozenset(statuses),
        model=model,
        created_before=created_before,
        created_after=created_after,
        suffix=suffix,
    )
