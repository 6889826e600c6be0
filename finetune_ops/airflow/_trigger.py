"""A trigger that waits for a set of jobs from a :class:`~finetune_ops.BatchState`."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from finetune_ops._policies import PollPolicy
from finetune_ops._state import BatchState

from ._compat import BaseTrigger, TriggerEvent
from ._hook import TogetherHook
from ._outcomes import event_payload

__all__ = ["FineTuneJobsTrigger", "poll_policy"]

log = logging.getLogger(__name__)

#: Seconds between looks when the operator gives none.
DEFAULT_POLL_INTERVAL = 30.0
#: The kill hook's own bound on its cancels; Airflow allows it 30 s by default.
KILL_TIMEOUT = 20.0


def poll_policy(poll_interval: float | None) -> PollPolicy:
    """A look every ``poll_interval`` seconds; the batch state's deadline is the only limit."""
    interval = poll_interval or DEFAULT_POLL_INTERVAL
    return PollPolicy(interval=interval, growth=1.0, max_interval=interval, timeout=math.inf)


class FineTuneJobsTrigger(BaseTrigger):  # type: ignore[misc]
    """Waits until each job is terminal or the state's deadline passes.

    It sends no cancel while waiting, and a ``CancelledError`` (the triggerer
    stops, or hands the trigger to another one) ends the wait only: the jobs
    keep running. With ``cancel_on_kill``, Airflow's kill hook (Airflow 3.3+,
    fired when a user marks or clears the deferred task) cancels the jobs still
    waited for.

    The kwargs hold the connection id and the state, never the key.
    :meth:`serialize` gives the state as the wait knows it then, so a trigger
    built from it skips what is done and keeps the deadline.
    """

    def __init__(
        self,
        conn_id: str = TogetherHook.default_conn_name,
        state: dict[str, Any] | None = None,
        poll_interval: float | None = None,
        cancel_on_kill: bool = False,
    ) -> None:
        super().__init__()
        # Parsed now so that a bad state fails at defer time, not in the triggerer.
        self._state = BatchState.from_json(state or {})
        if poll_interval is not None and not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.cancel_on_kill = cancel_on_kill

    @property
    def state(self) -> dict[str, Any]:
        """The batch state as JSON, current while :meth:`run` goes on."""
        return self._state.to_json()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "finetune_ops.airflow.FineTuneJobsTrigger",
            {
                "conn_id": self.conn_id,
                "state": self.state,
                "poll_interval": self.poll_interval,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            hook = TogetherHook(together_conn_id=self.conn_id)
            async with await hook.aget_manager(poll=poll_policy(self.poll_interval)) as manager:
                report = await manager.wait_many(state=self._state)
        except Exception as exc:  # a CancelledError is not one: it goes up untouched
            log.warning("waiting for %d job(s) failed: %s", len(self._state.jobs), exc)
            jobs = {
                job_id: {"status": None, "ok": False, "cancel_sent": False, "error": str(exc)}
                for job_id in self._state.pending
            }
            yield TriggerEvent({"status": "error", "message": str(exc), "jobs": jobs})
            return
        yield TriggerEvent(event_payload(report))

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user killed the deferred task; cancel the jobs still waited for.

        Airflow versions before 3.3 never call this. Best effort: a failure is
        logged, and Airflow logs and drops what it raises.
        """
        pending = self._state.pending
        if not self.cancel_on_kill or not pending:
            return
        hook = TogetherHook(together_conn_id=self.conn_id)
        async with await hook.aget_manager() as manager:
            report = await manager.cancel_many(pending, timeout=KILL_TIMEOUT)
        for result in report:
            if result.ok:
                log.info("cancelled %s on kill (status %s)", result.job_id, result.status)
            else:
                log.warning("could not cancel %s on kill: %s", result.job_id, result.error)
