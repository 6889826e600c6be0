"""Immutable records for fine-tuning jobs and the values they hold.

The records describe jobs as the Together fine-tunes API reports them, but know
nothing of its JSON: turning wire payloads into records (and back) is the job of
the private converter in ``_converter``.

One :class:`FineTuneJob` covers both shapes the API sends: the full job (retrieve)
and the shorter one (cancel, list, create). Only ``id`` and ``status`` are
required; every other field is ``None`` when the server left it out or sent
``null``. Enumerated strings that the API may extend later (statuses, training
types and methods, event types and levels) are kept as sent, so a value added on
the server side never breaks a client.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Final

import attrs

__all__ = [
    "KNOWN_STATUSES",
    "TERMINAL_STATUSES",
    "FineTuneCheckpoint",
    "FineTuneEvent",
    "FineTuneJob",
    "JobStatus",
    "LRScheduler",
    "LRSchedulerArgs",
    "MultimodalParams",
    "Progress",
    "TrainingMethod",
    "TrainingType",
]


class JobStatus(str):
    """The status of a fine-tuning job: a ``str`` that knows whether it is final.

    Any string is a valid status, so values the API adds later are kept rather
    than refused; they count as not terminal, so waiting code keeps polling
    instead of stopping early. Compares equal to the plain string::

        >>> JobStatus("cancelled") == "cancelled"
        True
        >>> JobStatus("cancelled").is_terminal
        True
        >>> JobStatus("paused").is_terminal, JobStatus("paused").is_known
        (False, False)
    """

    __slots__ = ()

    PENDING: ClassVar[JobStatus]
    QUEUED: ClassVar[JobStatus]
    RUNNING: ClassVar[JobStatus]
    COMPRESSING: ClassVar[JobStatus]
    UPLOADING: ClassVar[JobStatus]
    CANCEL_REQUESTED: ClassVar[JobStatus]
    CANCELLED: ClassVar[JobStatus]
    ERROR: ClassVar[JobStatus]
    COMPLETED: ClassVar[JobStatus]
    USER_ERROR: ClassVar[JobStatus]

    @property
    def is_terminal(self) -> bool:
        """Whether the job is finished for good: completed, cancelled, error or user_error."""
        return self in TERMINAL_STATUSES

    @property
    def is_known(self) -> bool:
        """Whether this library knows the value (the API may add statuses later)."""
        return self in KNOWN_STATUSES

    def __repr__(self) -> str:
        return f"JobStatus({str.__repr__(self)})"


JobStatus.PENDING = JobStatus("pending")
JobStatus.QUEUED = JobStatus("queued")
JobStatus.RUNNING = JobStatus("running")
JobStatus.COMPRESSING = JobStatus("compressing")
JobStatus.UPLOADING = JobStatus("uploading")
JobStatus.CANCEL_REQUESTED = JobStatus("cancel_requested")
JobStatus.CANCELLED = JobStatus("cancelled")
JobStatus.ERROR = JobStatus("error")
JobStatus.COMPLETED = JobStatus("completed")
JobStatus.USER_ERROR = JobStatus("user_error")

#: The statuses after which a job never changes again. ``user_error`` is sent by
#: the service although the published spec does not list it.
TERMINAL_STATUSES: Final[frozenset[JobStatus]] = frozenset(
    {JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.ERROR, JobStatus.USER_ERROR}
)

#: Every status this version of the library knows about.
KNOWN_STATUSES: Final[frozenset[JobStatus]] = frozenset(
    {
        JobStatus.PENDING,
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.COMPRESSING,
        JobStatus.UPLOADING,
        JobStatus.CANCEL_REQUESTED,
        *TERMINAL_STATUSES,
    }
)


def _to_status(value: str) -> JobStatus:
    """Let a plain string stand for a status, as in ``FineTuneJob(status="running")``."""
    if isinstance(value, JobStatus):
        return value
    if not isinstance(value, str):
        raise TypeError(f"status must be a str, not {type(value).__name__}")
    return JobStatus(value)


@attrs.frozen(kw_only=True)
class FineTuneEvent:
    """One entry of a job's event log (a stage change, a checkpoint, an error ...).

    Servers omit fields freely, so all of them are optional. ``type`` and
    ``level`` are kept exactly as sent, including values unknown today.
    """

    object: str | None = None
    created_at: datetime | None = None
    level: str | None = None
    message: str | None = None
    type: str | None = None
    param_count: int | None = None
    token_count: int | None = None
    total_steps: int | None = None
    wandb_url: str | None = None
    step: int | None = None
    checkpoint_path: str | None = None
    model_path: str | None = None
    training_offset: int | None = None
    hash: str | None = None


@attrs.frozen(kw_only=True)
class FineTuneCheckpoint:
    """A checkpoint a job saved: an intermediate one, or its final model.

    Servers omit fields freely, so all of them are optional.
    """

    step: int | None = None
    created_at: datetime | None = None
    path: str | None = None
    checkpoint_type: str | None = None


@attrs.frozen(kw_only=True)
class TrainingType:
    """Whether all weights are trained (``"Full"``) or a LoRA adapter (``"Lora"``).

    The LoRA settings are ``None`` for full training.
    """

    type: str
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    lora_trainable_modules: str | None = None

    @property
    def is_lora(self) -> bool:
        """Whether this is LoRA (adapter) training."""
        return self.type.lower() == "lora"


@attrs.frozen(kw_only=True)
class TrainingMethod:
    """The training objective: supervised (``"sft"``) or preference (``"dpo"``).

    ``train_on_inputs`` applies to SFT (``True``, ``False`` or ``"auto"``); the
    ``dpo_*``, ``rpo_alpha`` and ``simpo_gamma`` settings apply to DPO.
    """

    method: str
    train_on_inputs: bool | str | None = None
    dpo_beta: float | None = None
    rpo_alpha: float | None = None
    dpo_normalize_logratios_by_length: bool | None = None
    dpo_reference_free: bool | None = None
    simpo_gamma: float | None = None


@attrs.frozen(kw_only=True)
class LRSchedulerArgs:
    """Settings of a learning-rate schedule; ``num_cycles`` only for cosine."""

    min_lr_ratio: float | None = None
    num_cycles: float | None = None


@attrs.frozen(kw_only=True)
class LRScheduler:
    """The learning-rate schedule: its kind (``"linear"``, ``"cosine"`` ...) and settings."""

    lr_scheduler_type: str
    lr_scheduler_args: LRSchedulerArgs | None = None


@attrs.frozen(kw_only=True)
class Progress:
    """The service's estimate of the time left before the job's next stage."""

    estimate_available: bool
    seconds_remaining: int | None = None


@attrs.frozen(kw_only=True)
class MultimodalParams:
    """Settings for multimodal models."""

    train_vision: bool | None = None


@attrs.frozen(kw_only=True)
class FineTuneJob:
    """A fine-tuning job, as returned by retrieve, list, cancel or create.

    Only ``id`` and ``status`` are always there; the shorter job shape that list,
    cancel and create return leaves many fields ``None``. Timestamps are
    timezone-aware.

    A field the server sent in a shape this library does not expect (a number
    where a timestamp belongs, an object where a list does) is left ``None`` and
    named in ``unparsed_fields``, rather than failing the whole record.
    """

    id: str
    status: JobStatus = attrs.field(converter=_to_status)

    # When and by whom.
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    user_id: str | None = None
    owner_address: str | None = None

    # Cost, size and log.
    total_price: int | None = None
    token_count: int | None = None
    param_count: int | None = None
    events: tuple[FineTuneEvent, ...] | None = None

    # Data and model.
    training_file: str | None = None
    validation_file: str | None = None
    packing: bool | None = None
    max_seq_length: int | None = None
    model: str | None = None
    model_output_name: str | None = None
    model_output_path: str | None = None
    suffix: str | None = None
    trainingfile_numlines: int | None = None
    trainingfile_size: int | None = None

    # Hyperparameters.
    n_epochs: int | None = None
    n_evals: int | None = None
    n_checkpoints: int | None = None
    eval_steps: int | None = None
    batch_size: int | str | None = None
    learning_rate: float | None = None
    lr_scheduler: LRScheduler | None = None
    warmup_ratio: float | None = None
    max_grad_norm: float | None = None
    weight_decay: float | None = None
    train_on_inputs: bool | str | None = None
    training_type: TrainingType | None = None
    training_method: TrainingMethod | None = None
    multimodal_params: MultimodalParams | None = None
    random_seed: int | None = None

    # Execution.
    job_id: str | None = None
    epochs_completed: int | None = None
    queue_depth: int | None = None
    progress: Progress | None = None

    # Tracking and provenance.
    wandb_project_name: str | None = None
    wandb_name: str | None = None
    wandb_url: str | None = None
    from_checkpoint: str | None = None
    from_hf_model: str | None = None
    hf_model_revision: str | None = None

    #: Fields the server sent that did not fit their documented type, left ``None``.
    unparsed_fields: tuple[str, ...] = ()

    @property
    def is_terminal(self) -> bool:
        """Whether the job has reached a status it never leaves (see :class:`JobStatus`)."""
        return self.status.is_terminal
