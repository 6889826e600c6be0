"""The per-job report a trigger event and an operator's XCom carry: small, plain JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from finetune_ops._errors import WaitTimeoutError
from finetune_ops._results import CancelResult

__all__ = ["event_payload", "job_outcome"]


def job_outcome(result: CancelResult) -> dict[str, Any]:
    """One job's line: its last status, whether it ended as asked, and the error if not."""
    error = result.error
    return {
        "status": None if result.status is None else str(result.status),
        "ok": result.ok,
        "cancel_sent": result.cancel_sent,
        "error": None if error is None else f"{type(error).__name__}: {error.message}",
    }


def event_payload(results: Iterable[CancelResult]) -> dict[str, Any]:
    """The event a wait ends with: ``success``, ``timeout`` (some job not done) or ``error``."""
    results = list(results)
    jobs = {result.job_id: job_outcome(result) for result in results}
    if all(result.ok for result in results):
        status = "success"
    elif any(isinstance(result.error, WaitTimeoutError) for result in results):
        status = "timeout"
    else:
        status = "error"
    return {"status": status, "jobs": jobs}


def failure_message(what: str, payload: dict[str, Any], *, shown: int = 10) -> str:
    """Why the task fails, naming the first jobs that did not end as asked."""
    jobs = payload.get("jobs") or {}
    failed = {job_id: job for job_id, job in jobs.items() if not job.get("ok")}
    head = f"{what}: {len(failed)} of {len(jobs)} job(s) did not end as asked"
    if payload.get("status") == "timeout":
        head += " (deadline passed; jobs not yet ended are left as they are)"
    if payload.get("message"):
        head += f": {payload['message']}"
    lines = [
        f"  {job_id}: {job.get('status') or 'status unknown'}, {job.get('error')}"
        for job_id, job in list(failed.items())[:shown]
    ]
    if len(failed) > shown:
        lines.append(f"  ... and {len(failed) - shown} more")
    return "\n".join([head, *lines])
