"""A trigger that waits for a set of jobs from a :class:`~finetune_ops.BatchState`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from finetune_ops._errors import WaitTimeoutError
from finetune_ops._state import BatchState

from ._compat import BaseTrigger, TriggerEvent
from ._hook import TogetherHook


class FineTuneJobsTrigger(BaseTrigger):  # type: ignore[misc]
    """Waits until each job is terminal or the state's deadline passes; cancels nothing.

    The kwargs hold the connection id and the state, never the key, so the
    trigger can be serialized, moved to another triggerer and resumed there.
    """

    def __init__(
        self,
        conn_id: str = TogetherHook.default_conn_name,
        state: dict[str, Any] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        # Parsed now so a bad state fails at defer time, not in the triggerer.
        BatchState.from_json(state or {})
        self.conn_id = conn_id
        self.state = state
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "finetune_ops.airflow.FineTuneJobsTrigger",
            {"conn_id": self.conn_id, "state": self.state, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = BatchState.from_json(self.state or {})
        try:
            manager = await TogetherHook(together_conn_id=self.conn_id).aget_manager()
            async with manager:
                # A CancelledError (the trigger moved or stopped) ends the wait
                # only: the jobs keep running, nothing is cancelled.
                report = await manager.wait_many(state=state)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": str(exc), "jobs": {}})
            return
        jobs = {
            result.job_id: {
                "status": None if result.status is None else str(result.status),
                "ok": result.ok,
                "error": None if result.error is None else str(result.error),
            }
            for result in report
        }
        if report.all_ok:
            status = "success"
        elif any(isinstance(r.error, WaitTimeoutError) for r in report):
            status = "timeout"
        else:
            status = "error"
        yield TriggerEvent({"status": status, "jobs": jobs})
