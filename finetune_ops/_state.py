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

The same state can be kept as it changes, as JSON lines (the command line's
``--journal``): a first line with ``"format"``, ``"version"`` and ``"form":
"journal"`` (plus what the writer wants to check on resuming: a command, a
base URL), then one line per change of one job, ``{"id": ..., <the job's
fields that changed>}``, such as ``{"id": "ft-1", "cancel_accepted": true}``.
:meth:`BatchState.apply` folds such a line in; :func:`accepted_line` and
:func:`result_line` make them. Readers ignore keys they do not know.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ._converter import format_timestamp, parse_timestamp
from ._errors import error_from_json, error_to_json
from ._policies import seconds
from ._records import FineTuneJob, JobStatus
from ._results import CancelResult

__all__ = ["BatchState", "JobProgress", "accepted_line", "result_line"]

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
            job.status = _text(result.status)
        job.cancel_accepted = job.cancel_accepted or result.cancel_sent
        job.result = _result_json(result)

    def apply(self, line: Mapping[str, Any]) -> None:
        """Fold in one change line of a journal (``{"id": ..., <changed fields>}``).

        The fields given replace the job's, except that an accepted cancel stays
        accepted. A job the state does not hold is added. ValueError for a line
        that is not a change of one job.
        """
        job_id = line.get("id") if isinstance(line, Mapping) else None
        if not isinstance(job_id, str):
            raise ValueError("a change line needs an 'id' string")
        job = self.jobs.get(job_id) or JobProgress()
        changed = _progress(job_id, {**job.to_json(), **line})
        changed.cancel_accepted = changed.cancel_accepted or job.cancel_accepted
        self.jobs[job_id] = changed

    def reopen(self, *, unended: bool = False) -> list[str]:
        """Forget the results that failed, so a batch from this state tries those jobs again.

        With ``unended``, also those of jobs that had not ended (a cancel that did
        not wait). Accepted cancels stay accepted: they are not sent again.
        Returns the ids reopened, in order.
        """
        reopened = []
        for job_id, job in self.jobs.items():
            result = job.result
            if result is None:
                continue
            status = result.get("status")
            ended = isinstance(status, str) and JobStatus(status).is_terminal
            if not result.get("ok") or (unended and not ended):
                job.result = None
                reopened.append(job_id)
        return reopened

    def subset(self, job_ids: Iterable[str]) -> BatchState:
        """A state of only ``job_ids`` (which it must hold), with this one's deadline.

        The two share each job's progress: a batch run from the subset keeps this
        state current too.
        """
        part = BatchState(deadline=self.deadline)
        part.jobs = {job_id: self.jobs[job_id] for job_id in job_ids}
        return part

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
            state.jobs[str(job_id)] = _progress(job_id, job)
        return state


def accepted_line(job_id: str, status: str | None = None) -> dict[str, Any]:
    """The change line for a cancel the API accepted (answering with ``status``)."""
    line: dict[str, Any] = {"id": job_id, "cancel_accepted": True}
    if status is not None:
        line["status"] = status
    return line


def result_line(result: CancelResult) -> dict[str, Any]:
    """The change line for a job's final result (and the status it ended with)."""
    line: dict[str, Any] = {"id": result.job_id, "result": _result_json(result)}
    if result.status is not None:
        line["status"] = str(result.status)
    if result.cancel_sent:
        line["cancel_accepted"] = True
    return line


def _text(status: JobStatus) -> str:
    """The status as a plain str, one copy for every job in it (``str()`` makes a new one)."""
    return sys.intern(str(status))


def _result_json(result: CancelResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "status": None if result.status is None else _text(result.status),
        "cancel_sent": result.cancel_sent,
        "attempts": result.attempts,
        "error": None if result.error is None else error_to_json(result.error),
    }


def _is_result(result: Mapping[str, Any]) -> bool:
    status, attempts, error = result.get("status"), result.get("attempts", 0), result.get("error")
    return (
        isinstance(result.get("ok"), bool)
        and (status is None or isinstance(status, str))
        and isinstance(result.get("cancel_sent", False), bool)
        and isinstance(attempts, int)
        and not isinstance(attempts, bool)
        and attempts >= 0
        and (error is None or isinstance(error, Mapping))
    )


def _progress(job_id: object, job: object) -> JobProgress:
    """One job's progress from its JSON object; ValueError when it is not one."""
    if not isinstance(job, Mapping):
        raise ValueError(f"the state of {job_id!r} is not an object")
    status = job.get("status")
    accepted = job.get("cancel_accepted", False)
    result = job.get("result")
    if not (status is None or isinstance(status, str)) or not isinstance(accepted, bool):
        raise ValueError(f"the state of {job_id!r} has a bad 'status' or 'cancel_accepted'")
    if not (result is None or isinstance(result, Mapping)):
        raise ValueError(f"the result of {job_id!r} is not an object")
    if result is not None and not _is_result(result):
        raise ValueError(
            f"the result of {job_id!r} is not {{'ok': bool, 'status': str or null, "
            "'cancel_sent': bool, 'attempts': int, 'error': object or null}"
        )
    return JobProgress(
        status=status,
        cancel_accepted=accepted,
        result=None if result is None else dict(result),
    )
