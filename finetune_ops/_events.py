"""Events a manager reports as it works: enough to drive a progress bar or a log.

They go to the ``on_event`` callback (sync or async) and, as log records, to
the ``finetune_ops`` logger. None of them carries the API key.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

import attrs

from ._gate import RateChanged
from ._records import FineTuneJob, JobStatus
from ._results import CancelResult
from ._retry import RetryEvent

__all__ = [
    "CancelAccepted",
    "Emit",
    "Emitter",
    "Event",
    "JobFinished",
    "OnEvent",
    "StatusChanged",
    "make_emitter",
]

logger = logging.getLogger("finetune_ops")


@attrs.frozen(kw_only=True)
class StatusChanged:
    """A job was seen in a new status (``previous`` is None the first time it is seen)."""

    job_id: str
    previous: JobStatus | None
    job: FineTuneJob

    @property
    def status(self) -> JobStatus:
        return self.job.status


@attrs.frozen(kw_only=True)
class CancelAccepted:
    """The API answered 2xx to a job's cancel request: the cancel is under way.

    Heard before the job's :class:`StatusChanged`, and never twice for one job
    of a batch. A journal records it so that a resumed run sends no second cancel.
    ``job`` is the API's answer, or ``None`` when that answer could not be read.
    """

    job_id: str
    job: FineTuneJob | None


@attrs.frozen(kw_only=True)
class JobFinished:
    """A job of a batch has its result."""

    result: CancelResult


Event = RetryEvent | RateChanged | CancelAccepted | StatusChanged | JobFinished
OnEvent = Callable[[Event], Awaitable[None] | None]


def _log(event: Event) -> None:
    if isinstance(event, StatusChanged):
        logger.debug("%s: %s -> %s", event.job_id, event.previous, event.status)
    elif isinstance(event, CancelAccepted):
        logger.debug("%s: cancel accepted", event.job_id)
    elif isinstance(event, JobFinished):
        result = event.result
        if result.ok:
            logger.debug("%s finished: %s", result.job_id, result.status)
        else:
            logger.info("%s failed: %s", result.job_id, result.error)


class Emitter:
    """Logs an event and hands it to ``on_event``; see :func:`make_emitter`.

    :attr:`quiet` says when nobody would hear an event that went well (no
    callback, debug logging off), so a batch can skip building it.
    """

    __slots__ = ("_on_event",)

    def __init__(self, on_event: OnEvent | None) -> None:
        self._on_event = on_event

    @property
    def quiet(self) -> bool:
        return self._on_event is None and not logger.isEnabledFor(logging.DEBUG)

    async def __call__(self, event: Event) -> None:
        _log(event)
        on_event = self._on_event
        if on_event is None:
            return
        try:
            outcome = on_event(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("the on_event callback raised on %s", type(event).__name__)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # a real cancellation of the task that emitted
            # The callback raised CancelledError itself: its bug, not a cancellation.
            logger.exception("the on_event callback raised on %s", type(event).__name__)


#: What the manager, its batches and their ledgers emit through.
Emit = Emitter


def make_emitter(on_event: OnEvent | None) -> Emitter:
    """An async callable that logs an event and hands it to ``on_event``.

    An exception from the callback is logged, not raised: a broken progress bar
    must not lose a batch's results. That includes a ``CancelledError`` the
    callback raises itself; only a real cancellation of the emitting task (the
    caller's, or the batch stopping) goes on.
    """
    if on_event is not None and not callable(on_event):
        raise TypeError("on_event must be callable")
    return Emitter(on_event)
