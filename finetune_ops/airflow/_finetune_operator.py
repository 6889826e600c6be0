"""FineTuneOperator: start a fine-tuning job, wait for it deferred, cancel it when killed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from finetune_ops._converter import unstructure
from finetune_ops._records import FineTuneJob
from finetune_ops._state import BatchState

from ._compat import AirflowException, BaseOperator
from ._hook import TogetherHook
from ._idempotency import FAILED, reusable_job, run_suffix
from ._outcomes import event_payload, failure_message
from ._sync import run_sync
from ._trigger import KILL_TIMEOUT, FineTuneJobsTrigger, poll_policy

__all__ = ["FineTuneOperator"]

log = logging.getLogger(__name__)


class FineTuneOperator(BaseOperator):  # type: ignore[misc]
    """Start a fine-tuning job and wait until it has ended; XCom its record.

    ``model``, ``training_file``, ``suffix`` and ``create_params`` (any other
    setting of the create request, e.g. ``{"n_epochs": 3}``) are templated.

    **One job per logical run.** The job's suffix is ``suffix`` plus a digest
    of the DAG, task, run id and map index, the same on every try. Before
    creating, the account's list is searched for it: a retry finds the job an
    earlier try started and waits for that one. Only when that job failed
    (``error``, ``user_error``) or was cancelled does a retry start a new one.

    With ``deferrable`` (the default) the wait happens in the triggerer;
    ``timeout`` (seconds from the start, None for none) bounds it, and a job
    still active then is left running and the task fails.

    The task fails when the job ends ``error``, ``user_error`` or ``cancelled``.
    It returns the job's record as plain JSON (``id``, ``status``,
    ``model_output_name`` ...; fields without a value and the event log left
    out).

    **Killed tasks cancel their job** (``cancel_on_kill``, default true): a
    worker's ``on_kill`` cancels the job it started, and on Airflow 3.3+ the
    trigger's kill hook does the same for a deferred task. Airflow before 3.3
    has no such hook: a deferred task marked failed there leaves the job running.
    """

    template_fields: Sequence[str] = ("model", "training_file", "suffix", "create_params")
    template_fields_renderers: ClassVar[dict[str, str]] = {"create_params": "json"}
    ui_color = "#c3e6f4"

    def __init__(
        self,
        *,
        model: str,
        training_file: str,
        suffix: str | None = None,
        create_params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        poll_interval: float | None = None,
        deferrable: bool = True,
        cancel_on_kill: bool = True,
        together_conn_id: str = TogetherHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        params = dict(create_params or {})
        for key in ("model", "training_file", "suffix"):
            if key in params:
                raise ValueError(f"give {key} as the operator's argument, not in create_params")
        self.model = model
        self.training_file = training_file
        self.suffix = suffix
        self.create_params = params
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.together_conn_id = together_conn_id
        self._job_id: str | None = None

    # -- the task ----------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        ti = context["ti"]
        key = run_suffix(
            self.suffix,
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=getattr(ti, "map_index", -1),
        )
        hook = self._hook()
        job = run_sync(lambda: self._start(hook, key))
        self._job_id = job.id
        ti.xcom_push(key="job_id", value=job.id)
        if job.is_terminal:
            return self._finish(hook, job.id)
        state = BatchState([job.id], timeout=self.timeout)
        if not self.deferrable:
            report = run_sync(lambda: self._wait(hook, state))
            return self._complete(hook, event_payload(report))
        self.defer(
            trigger=FineTuneJobsTrigger(
                conn_id=self.together_conn_id,
                state=state.to_json(),
                poll_interval=self.poll_interval,
                cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("defer() returned")  # pragma: no cover - it raises

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        return self._complete(self._hook(), event)

    def on_kill(self) -> None:
        """The worker is killing the task: cancel the job this try started or found."""
        job_id = self._job_id
        if not self.cancel_on_kill or job_id is None:
            return
        hook = self._hook()
        try:
            job = run_sync(lambda: self._cancel(hook, job_id))
        except Exception as exc:  # best effort: the kill goes on regardless
            log.warning("could not cancel %s on kill: %s", job_id, exc)
        else:
            log.info("cancelled %s on kill (status %s)", job_id, job.status)

    # -- parts -------------------------------------------------------------------

    def _hook(self) -> TogetherHook:
        return TogetherHook(together_conn_id=self.together_conn_id)

    async def _start(self, hook: TogetherHook, suffix: str) -> FineTuneJob:
        async with await hook.aget_manager() as manager:
            found = reusable_job(await manager.list(), suffix=suffix, model=self.model)
            if found is not None:
                log.info("an earlier try started %s (%s); waiting for it", found.id, found.status)
                return found
            job = await manager.create(
                model=self.model,
                training_file=self.training_file,
                suffix=suffix,
                **self.create_params,
            )
        log.info("started %s (suffix %s)", job.id, suffix)
        return job

    async def _wait(self, hook: TogetherHook, state: BatchState) -> Any:
        async with await hook.aget_manager(poll=poll_policy(self.poll_interval)) as manager:
            return await manager.wait_many(state=state)

    async def _cancel(self, hook: TogetherHook, job_id: str) -> FineTuneJob:
        async with await hook.aget_manager() as manager:
            return await manager.cancel(job_id, timeout=KILL_TIMEOUT)

    async def _retrieve(self, hook: TogetherHook, job_id: str) -> FineTuneJob:
        async with await hook.aget_manager() as manager:
            return await manager.retrieve(job_id)

    def _complete(self, hook: TogetherHook, event: dict[str, Any]) -> dict[str, Any]:
        jobs = event.get("jobs") or {}
        if len(jobs) != 1:
            raise AirflowException(failure_message("fine-tune", event))
        (job_id,) = jobs
        self._job_id = job_id
        if event.get("status") == "timeout":
            message = f"fine-tune: {job_id} had not ended by the deadline; it is still running"
            raise AirflowException(message)
        if not jobs[job_id].get("ok"):
            raise AirflowException(failure_message("fine-tune", event))
        return self._finish(hook, job_id)

    def _finish(self, hook: TogetherHook, job_id: str) -> dict[str, Any]:
        job = run_sync(lambda: self._retrieve(hook, job_id))
        if job.status in FAILED:
            raise AirflowException(f"fine-tune: {job_id} ended {job.status}")
        record: dict[str, Any] = unstructure(job)
        record.pop("events", None)  # the log is long; XCom stays small
        log.info("%s ended %s: %s", job_id, job.status, job.model_output_name)
        return record
