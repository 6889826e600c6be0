"""A batch's state as plain data: what is known of each job, and the deadline.

A :class:`BatchState` is handed to a batch call (``cancel_many(state=...)``),
which keeps it current as it goes. Its JSON form is small, versioned and holds
no client objects, so a wait can stop in one process and go on in another: a
batch started from it skips the jobs that have their result, sends no second
cancel for one the API accepted, and keeps the original deadline.

The JSON form::

    {
      "format": "finetune-ops/batch",
      "version": 1,
      "deadline": "2026-12-02T07:30:00Z",          # UTC, or null for none
      "jobs": {
        "ft-...": {
          "status": "cancel_requested",              # last status seen, or null
          "cancel_accepted": true,                   # the API answered 2xx to a cancel
          "result": null                             # or the final result, below
        }
      }
    }

A result is ``{"ok", "status", "cancel_sent", "attempts", "error"}``, where
``error`` is null or ``{"type", "message", "status_code"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ._converter import format_timestamp, parse_timestamp
from ._errors import error_from_json, error_to_json
from ._policies import seconds
from ._records import FineTuneJob, JobStatus
from ._results import CancelResult

__all__ = ["BatchState", "JobProgress"]

FORMAT: Final = "finetune-ops/batch"
VERSION: Final = 1


class JobProgress:
    """What is known of one job of a batch."""

    __slots__ = ("cancel_accepted", "result", "status")

    def __init__(
        self,
        *,
        status: str | None = None,
        cancel_accepted: bool = False,
        result: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.cancel_accepted = cancel_accepted
        self.result = result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobProgress):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return (
            f"JobProgress(status={self.status!r}, cancel_accepted={self.cancel_accepted!r}, "
            f"finished={self.result is not None})"
        )

    @property
    def finished(self) -> bool:
        return self.result is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "cancel_accepted": self.cancel_accepted,
            "result": self.result,
        }


class BatchState:
    """The ids of a batch, what is known of each, and the absolute deadline (UTC).

    ``timeout`` (seconds or a timedelta from now) or ``deadline`` (an aware
    datetime) fixes when the batch gives up, once: a resumed batch keeps it.
    """

    __slots__ = ("deadline", "jobs")

    def __init__(
        self,
        job_ids: Iterable[str] = (),
        *,
        timeout: float | timedelta | None = None,
        deadline: datetime | None = None,
    ) -> None:
        if isinstance(job_ids, str | bytes):
            raise TypeError("job_ids must be an iterable of ids, not a single string")
        if timeout is not None and deadline is not None:
            raise ValueError("give a timeout or a deadline, not both")
        if timeout is not None:
            deadline = datetime.now(UTC) + timedelta(seconds=seconds(timeout))
        if deadline is not None and deadline.utcoffset() is None:
            raise ValueError("the deadline must be an aware datetime (UTC)")
        self.deadline = deadline
        self.jobs: dict[str, JobProgress] = {}
        for job_id in job_ids:
            if not isinstance(job_id, str):
                raise TypeError(f"a job id must be a str, not {type(job_id).__name__}")
            self.jobs.setdefault(job_id, JobProgress())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchState):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return (
            f"<BatchState {len(self.finished)}/{len(self.jobs)} finished "
            f"deadline={self.deadline.isoformat() if self.deadline else None}>"
        )

    @property
    def pending(self) -> list[str]:
        """Ids still without their result, in order."""
        return [job_id for job_id, job in self.jobs.items() if not job.finished]

    @property
    def finished(self) -> list[str]:
        """Ids that have their result, in order."""
        return [job_id for job_id, job in self.jobs.items() if job.finished]

    def seconds_left(self, now: datetime | None = None) -> float | None:
        """Seconds until the deadline (never below 0), or None when there is none."""
        if self.deadline is None:
            return None
        now = now or datetime.now(UTC)
        return max(0.0, (self.deadline - now).total_seconds())

    def result(self, job_id: str) -> CancelResult | None:
        """The job's final result, rebuilt from the state, or None if it has none yet."""
        data = self.jobs[job_id].result
        if data is None:
            return None
        status = data.get("status")
        error = data.get("error")
        return CancelResult(
            job_id=job_id,
            job=None if status is None else FineTuneJob(id=job_id, status=JobStatus(status)),
            error=None if error is None else error_from_json(error, job_id=job_id),
            cancel_sent=bool(data.get("cancel_sent")),
            attempts=int(data.get("attempts") or 0),
        )

    # -- what a batch records -----------------------------------------------------

    def record_status(self, job_id: str, status: str) -> None:
        self.jobs[job_id].status = status

    def record_accepted(self, job_id: str) -> None:
        self.jobs[job_id].cancel_accepted = True

    def record_result(self, result: CancelResult) -> None:
        job = self.jobs.setdefault(result.job_id, JobProgress())
        if result.status is not None:
            job.status = str(result.status)
        job.cancel_accepted = job.cancel_accepted or result.cancel_sent
        job.result = {
            "ok": result.ok,
            "status": None if result.status is None else str(result.status),
            "cancel_sent": result.cancel_sent,
            "attempts": result.attempts,
            "error": None if result.error is None else error_to_json(result.error),
        }

    # -- JSON -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The state as plain JSON values (see the module docstring)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "deadline": None if self.deadline is None else format_timestamp(self.deadline),
            "jobs": {job_id: job.to_json() for job_id, job in self.jobs.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchState:
        """Rebuild a state from :meth:`to_json`; ValueError for anything else."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError("not a finetune-ops batch state")
        if data.get("version") != VERSION:
            raise ValueError(
                f"batch state version {data.get('version')!r} is not {VERSION}, "
                "the one this version of finetune-ops reads"
            )
        deadline = data.get("deadline")
        jobs = data.get("jobs")
        if not isinstance(jobs, Mapping) or not (deadline is None or isinstance(deadline, str)):
            raise ValueError("a batch state needs a 'jobs' object and a 'deadline' string or null")
        state = cls(deadline=None if deadline is None else parse_timestamp(deadline))
        for job_id, job in jobs.items():
            if not isinstance(job, Mapping):
                raise ValueError(f"the state of {job_id!r} is not an object")
            status, accepted, result = (
                job.get("status"),
                job.get("cancel_accepted"),
                job.get("result"),
            )
            if not (status is None or isinstance(status, str)) or not isinstance(accepted, bool):
                raise ValueError(f"the state of {job_id!r} has a bad 'status' or 'cancel_accepted'")
            if not (result is None or isinstance(result, Mapping)):
                raise ValueError(f"the result of {job_id!r} is not an object")
            state.jobs[str(job_id)] = JobProgress(
                status=status,
                cancel_accepted=accepted,
                result=None if result is None else dict(result),
            )
        return state
