"""CancelFineTuneJobsOperator: cancel jobs by id or status, then wait (deferred) until they end."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from finetune_ops._records import TERMINAL_STATUSES
from finetune_ops._state import BatchState

from ._compat import AirflowException, BaseOperator
from ._hook import TogetherHook
from ._outcomes import event_payload, failure_message
from ._selection import check_statuses, select
from ._sync import run_sync
from ._trigger import FineTuneJobsTrigger, poll_policy

__all__ = ["CancelFineTuneJobsOperator"]

log = logging.getLogger(__name__)


class CancelFineTuneJobsOperator(BaseOperator):  # type: ignore[misc]
    """Cancel fine-tuning jobs and, with ``wait``, wait until each has ended.

    Give ``job_ids`` (templated: a list, or one comma-separated string), or
    choose jobs from the account's list with ``statuses`` and/or
    ``all_active`` (every job not ended), narrowed by ``model`` and ``suffix``.

    The cancels are sent from the worker; with ``deferrable`` (the default) the
    wait then goes on in the triggerer, from a batch state that records every
    accepted cancel, so a triggerer restart never sends one twice. Without it
    the worker waits. ``timeout`` (seconds, from the start of the task) bounds
    cancels and wait together.

    The task fails when a job did not end as asked (a cancel refused, a job
    still active at the deadline, or a job that ended in a status of
    ``fail_on``). It returns the per-job report as XCom:
    ``{"status", "jobs": {id: {"status", "ok", "cancel_sent", "error"}}}``.
    """

    template_fields: Sequence[str] = ("job_ids", "statuses", "model", "suffix")
    ui_color = "#f4c7c3"

    def __init__(
        self,
        *,
        job_ids: Sequence[str] | str | None = None,
        statuses: Collection[str] | None = None,
        all_active: bool = False,
        model: str | None = None,
        suffix: str | None = None,
        wait: bool = True,
        timeout: float | None = 600.0,
        fail_on: Collection[str] = (),
        poll_interval: float | None = None,
        deferrable: bool = True,
        together_conn_id: str = TogetherHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if job_ids is not None and (statuses or all_active):
            raise ValueError("give job_ids, or choose jobs with statuses/all_active, not both")
        if job_ids is None and not (statuses or all_active):
            raise ValueError("give job_ids, or choose jobs with statuses or all_active")
        self.job_ids = job_ids
        self.statuses = list(statuses or ())
        self.all_active = all_active
        self.model = model
        self.suffix = suffix
        self.wait = wait
        self.timeout = timeout
        self.fail_on = frozenset(check_statuses(fail_on)) & frozenset(TERMINAL_STATUSES)
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.together_conn_id = together_conn_id

    # -- the task ----------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        hook = TogetherHook(together_conn_id=self.together_conn_id)
        ids = self._given_ids()
        if ids is None:
            ids = run_sync(lambda: self._selected(hook))
            log.info("selected %d job(s) to cancel", len(ids))
        if not ids:
            return {"status": "success", "jobs": {}}
        state = BatchState(ids, timeout=self.timeout)
        if not self.deferrable:
            report = run_sync(lambda: self._cancel(hook, state, wait=self.wait))
            return self._finish(event_payload(report))
        report = run_sync(lambda: self._cancel(hook, state, wait=False))
        still_active = awaiting(state)
        if not self.wait or not still_active.pending:
            return self._finish(event_payload(report))
        log.info("cancels sent; waiting deferred for %d job(s)", len(still_active.pending))
        self.defer(
            trigger=FineTuneJobsTrigger(
                conn_id=self.together_conn_id,
                state=still_active.to_json(),
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("defer() returned")  # pragma: no cover - it raises

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        return self._finish(event)

    # -- parts -------------------------------------------------------------------

    def _given_ids(self) -> list[str] | None:
        ids = self.job_ids
        if ids is None:
            return None
        if isinstance(ids, str):
            ids = ids.split(",")
        return list(dict.fromkeys(str(job_id).strip() for job_id in ids if str(job_id).strip()))

    async def _selected(self, hook: TogetherHook) -> list[str]:
        statuses = check_statuses(self.statuses)
        async with await hook.aget_manager() as manager:
            jobs = await manager.list()
        return select(
            jobs,
            statuses=statuses,
            all_active=self.all_active,
            model=self.model,
            suffix=self.suffix,
        )

    async def _cancel(self, hook: TogetherHook, state: BatchState, *, wait: bool) -> Any:
        async with await hook.aget_manager(poll=poll_policy(self.poll_interval)) as manager:
            return await manager.cancel_many(state=state, wait=wait)

    def _finish(self, payload: dict[str, Any]) -> dict[str, Any]:
        jobs = payload.get("jobs") or {}
        for job_id, job in jobs.items():
            if job.get("ok") and job.get("status") in self.fail_on:
                job["ok"] = False
                job["error"] = f"ended {job['status']}, which fail_on counts as a failure"
                log.info("%s ended %s", job_id, job["status"])
        if payload.get("status") == "success" and not all(job["ok"] for job in jobs.values()):
            payload["status"] = "error"
        report = {"status": payload.get("status"), "jobs": jobs}
        if report["status"] != "success":
            raise AirflowException(failure_message("cancel", payload))
        log.info("%d job(s) ended as asked", len(jobs))
        return report


def awaiting(state: BatchState) -> BatchState:
    """The state to wait from: accepted cancels kept, results of jobs not yet ended dropped.

    A cancel without wait gives each accepted job a result (``cancel_requested``);
    the wait must still see those jobs end. Refused cancels keep their error.
    """
    data = state.to_json()
    for job in data["jobs"].values():
        result = job["result"]
        if result is not None and result["ok"] and result["status"] not in TERMINAL_STATUSES:
            job["result"] = None
    return BatchState.from_json(data)
