"""One job per logical run: a suffix derived from the run, looked up before creating."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

from finetune_ops._records import FineTuneJob, JobStatus

__all__ = ["FAILED", "reusable_job", "run_suffix"]

#: A job that ended so is not reused: the retry is there to start a new one.
FAILED = frozenset({JobStatus.ERROR, JobStatus.USER_ERROR, JobStatus.CANCELLED})

_EPOCH = datetime.min.replace(tzinfo=UTC)


def run_suffix(
    suffix: str | None, *, dag_id: str, task_id: str, run_id: str, map_index: int
) -> str:
    """``suffix`` plus a digest of the task instance's identity, the same on every try."""
    identity = "\0".join((dag_id, task_id, run_id, str(map_index)))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"{suffix}-{digest}" if suffix else f"af-{digest}"


def reusable_job(jobs: Iterable[FineTuneJob], *, suffix: str, model: str) -> FineTuneJob | None:
    """The newest job an earlier try started for this run, unless it failed or was cancelled."""
    mine = [job for job in jobs if job.suffix == suffix and job.model == model]
    if not mine:
        return None
    newest = max(mine, key=lambda job: job.created_at or _EPOCH)
    return None if newest.status in FAILED else newest
