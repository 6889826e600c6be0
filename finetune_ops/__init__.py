"""finetune_ops: cancel, watch and clean up many Together AI fine-tuning jobs from asyncio.

Everything public is imported from here; the modules behind it are private.
"""

import logging as _logging
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from ._errors import (
        ActiveJobError,
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConflictError,
        FinetuneOpsError,
        InternalServerError,
        InvalidJobIdError,
        InvalidResponseError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        UnprocessableEntityError,
        WaitTimeoutError,
    )
    from ._events import CancelAccepted, Event, JobFinished, StatusChanged
    from ._gate import RateChanged, RateGate
    from ._manager import JobManager
    from ._policies import (
        DEFAULT_POLL,
        DEFAULT_RETRY,
        DEFAULT_TIMEOUTS,
        PollPolicy,
        RetryPolicy,
        Timeouts,
    )
    from ._records import (
        TERMINAL_STATUSES,
        FineTuneCheckpoint,
        FineTuneEvent,
        FineTuneJob,
        JobStatus,
        LRScheduler,
        LRSchedulerArgs,
        MultimodalParams,
        Progress,
        TrainingMethod,
        TrainingType,
    )
    from ._results import CancelReport, CancelResult
    from ._retry import RetryEvent
    from ._state import BatchState, JobProgress

# Names load on first use, not at import: the ``finetune-ops`` command installs
# its Ctrl-C handling before aiohttp and the rest are imported (no traceback
# when interrupted while starting).
_LAZY: dict[str, str] = {
    "ActiveJobError": "_errors",
    "APIConnectionError": "_errors",
    "APIStatusError": "_errors",
    "APITimeoutError": "_errors",
    "AuthenticationError": "_errors",
    "BadRequestError": "_errors",
    "ConflictError": "_errors",
    "FinetuneOpsError": "_errors",
    "InternalServerError": "_errors",
    "InvalidJobIdError": "_errors",
    "InvalidResponseError": "_errors",
    "NotFoundError": "_errors",
    "PermissionDeniedError": "_errors",
    "RateLimitError": "_errors",
    "UnprocessableEntityError": "_errors",
    "WaitTimeoutError": "_errors",
    "CancelAccepted": "_events",
    "Event": "_events",
    "JobFinished": "_events",
    "StatusChanged": "_events",
    "RateChanged": "_gate",
    "RateGate": "_gate",
    "JobManager": "_manager",
    "DEFAULT_POLL": "_policies",
    "DEFAULT_RETRY": "_policies",
    "DEFAULT_TIMEOUTS": "_policies",
    "PollPolicy": "_policies",
    "RetryPolicy": "_policies",
    "Timeouts": "_policies",
    "TERMINAL_STATUSES": "_records",
    "FineTuneCheckpoint": "_records",
    "FineTuneEvent": "_records",
    "FineTuneJob": "_records",
    "JobStatus": "_records",
    "LRScheduler": "_records",
    "LRSchedulerArgs": "_records",
    "MultimodalParams": "_records",
    "Progress": "_records",
    "TrainingMethod": "_records",
    "TrainingType": "_records",
    "CancelReport": "_results",
    "CancelResult": "_results",
    "RetryEvent": "_retry",
    "BatchState": "_state",
    "JobProgress": "_state",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


_logging.getLogger("finetune_ops").addHandler(_logging.NullHandler())

try:
    __version__ = _version("finetune-ops")
except _PackageNotFoundError:  # pragma: no cover - imported from a source tree
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "TERMINAL_STATUSES",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ActiveJobError",
    "AuthenticationError",
    "BadRequestError",
    "BatchState",
    "CancelAccepted",
    "CancelReport",
    "CancelResult",
    "ConflictError",
    "Event",
    "FineTuneCheckpoint",
    "FineTuneEvent",
    "FineTuneJob",
    "FinetuneOpsError",
    "InternalServerError",
    "InvalidJobIdError",
    "InvalidResponseError",
    "JobFinished",
    "JobManager",
    "JobProgress",
    "JobStatus",
    "LRScheduler",
    "LRSchedulerArgs",
    "MultimodalParams",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "Progress",
    "RateChanged",
    "RateGate",
    "RateLimitError",
    "RetryEvent",
    "RetryPolicy",
    "StatusChanged",
    "Timeouts",
    "TrainingMethod",
    "TrainingType",
    "UnprocessableEntityError",
    "WaitTimeoutError",
    "__version__",
]
