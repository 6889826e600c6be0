"""finetune_ops: cancel, watch and clean up many Together AI fine-tuning jobs from asyncio.

Everything public is imported from here; the modules behind it are private.
"""

import logging as _logging
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

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
