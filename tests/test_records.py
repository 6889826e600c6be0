"""Job records: status semantics, immutability and the small conveniences on them."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest

from finetune_ops._records import (
    KNOWN_STATUSES,
    TERMINAL_STATUSES,
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

CONSTANTS = {
    "PENDING": "pending",
    "QUEUED": "queued",
    "RUNNING": "running",
    "COMPRESSING": "compressing",
    "UPLOADING": "uploading",
    "CANCEL_REQUESTED": "cancel_requested",
    "CANCELLED": "cancelled",
    "ERROR": "error",
    "COMPLETED": "completed",
    "USER_ERROR": "user_error",
}
TERMINAL = {"completed", "cancelled", "error", "user_error"}


@pytest.mark.parametrize(("name", "value"), CONSTANTS.items())
def test_status_constants(name: str, value: str) -> None:
    """Each class-level constant is a JobStatus equal to its wire value."""
    status = getattr(JobStatus, name)
    assert type(status) is JobStatus
    assert status == value


def test_terminal_set_is_exactly_the_four_final_statuses() -> None:
    """TERMINAL_STATUSES holds completed, cancelled, error and user_error, nothing else."""
    assert TERMINAL_STATUSES == TERMINAL
    assert JobStatus.USER_ERROR in TERMINAL_STATUSES
    assert all(type(s) is JobStatus for s in TERMINAL_STATUSES)


def test_known_statuses_are_the_constants() -> None:
    """KNOWN_STATUSES holds the ten documented values."""
    assert set(CONSTANTS.values()) == KNOWN_STATUSES


@pytest.mark.parametrize("value", CONSTANTS.values())
def test_is_terminal_for_known_statuses(value: str) -> None:
    """is_terminal is true exactly for the four final statuses; all known ones are known."""
    status = JobStatus(value)
    assert status.is_terminal is (value in TERMINAL)
    assert status.is_known is True


@pytest.mark.parametrize("value", ["paused", "", "COMPLETED", "Cancelled", "completed ", "evicted"])
def test_unknown_status_is_kept_and_not_terminal(value: str) -> None:
    """An unknown value stays as sent, is not known and never counts as terminal."""
    status = JobStatus(value)
    assert status == value
    assert status.is_known is False
    assert status.is_terminal is False


def test_status_behaves_as_plain_string() -> None:
    """A status compares, hashes and formats like the plain string it holds."""
    status = JobStatus("cancelled")
    assert status == "cancelled"
    assert status != "running"
    assert isinstance(status, str)
    assert {"cancelled": 1}[status] == 1
    assert "cancelled" in TERMINAL_STATUSES
    assert f"{status}" == "cancelled"
    assert type(str(status)) is str
    assert str(status) == "cancelled"


def test_status_repr() -> None:
    """The repr names the class and the value."""
    assert repr(JobStatus("running")) == "JobStatus('running')"
    assert repr(JobStatus.CANCEL_REQUESTED) == "JobStatus('cancel_requested')"


def test_status_has_no_instance_dict() -> None:
    """JobStatus uses __slots__, so no per-instance dictionary is allocated."""
    with pytest.raises(AttributeError):
        JobStatus("running").extra = 1  # type: ignore[attr-defined]


def test_job_defaults_and_is_terminal() -> None:
    """A job needs only id and status; the rest is None and is_terminal follows the status."""
    job = FineTuneJob(id="ft-1", status=JobStatus.RUNNING)
    assert job.is_terminal is False
    assert job.created_at is None
    assert job.events is None
    assert job.training_type is None
    done = attrs.evolve(job, status=JobStatus.USER_ERROR)
    assert done.is_terminal is True
    assert attrs.evolve(job, status=JobStatus("paused")).is_terminal is False


def test_every_optional_job_field_defaults_to_none() -> None:
    """All fields but id and status are optional with a None default."""
    for field in attrs.fields(FineTuneJob):
        if field.name in {"id", "status"}:
            assert field.default is attrs.NOTHING
        elif field.name == "unparsed_fields":
            assert field.default == ()
        else:
            assert field.default is None, field.name


@pytest.mark.parametrize(
    "record",
    [
        FineTuneJob(id="ft-1", status=JobStatus.QUEUED),
        FineTuneEvent(message="hello"),
        TrainingType(type="Full"),
        TrainingMethod(method="sft"),
        LRScheduler(lr_scheduler_type="linear"),
        LRSchedulerArgs(min_lr_ratio=0.0),
        Progress(estimate_available=False),
        MultimodalParams(train_vision=True),
    ],
)
def test_records_are_frozen(record: attrs.AttrsInstance) -> None:
    """Assigning to any record's field raises FrozenInstanceError."""
    name = attrs.fields(type(record))[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(record, name, None)


def test_records_are_keyword_only() -> None:
    """Records refuse positional arguments, so field order is not part of the API."""
    with pytest.raises(TypeError):
        FineTuneJob("ft-1", JobStatus.RUNNING)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TrainingType("Lora")  # type: ignore[call-arg]


def test_records_compare_and_hash_by_value() -> None:
    """Two jobs with equal fields are equal and hash alike, events included."""
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

    def make() -> FineTuneJob:
        return FineTuneJob(
            id="ft-1",
            status=JobStatus("running"),
            created_at=when,
            events=(FineTuneEvent(type="job_start", created_at=when),),
            training_type=TrainingType(type="Lora", lora_r=8, lora_alpha=16),
        )

    assert make() == make()
    assert hash(make()) == hash(make())
    assert len({make(), make()}) == 1


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("Lora", True), ("lora", True), ("LORA", True), ("Full", False), ("QLoRA-next", False)],
)
def test_training_type_is_lora(kind: str, expected: bool) -> None:
    """is_lora is true for the LoRA type in any letter case, false otherwise."""
    assert TrainingType(type=kind).is_lora is expected


def test_nested_records_hold_their_settings() -> None:
    """Method, scheduler and progress records keep what they are given."""
    method = TrainingMethod(method="dpo", dpo_beta=0.1, dpo_reference_free=False)
    assert method.method == "dpo"
    assert method.train_on_inputs is None
    sched = LRScheduler(
        lr_scheduler_type="cosine",
        lr_scheduler_args=LRSchedulerArgs(min_lr_ratio=0.1, num_cycles=0.5),
    )
    assert sched.lr_scheduler_args is not None
    assert sched.lr_scheduler_args.num_cycles == 0.5
    assert Progress(estimate_available=True, seconds_remaining=30).seconds_remaining == 30


def test_a_plain_string_status_becomes_a_job_status() -> None:
    """FineTuneJob(status="running") works as users' own test doubles write it."""
    job = FineTuneJob(id="ft-1", status="running")
    assert isinstance(job.status, JobStatus)
    assert job.status.is_terminal is False
    assert FineTuneJob(id="ft-1", status="user_error").is_terminal is True
    with pytest.raises(TypeError):
        FineTuneJob(id="ft-1", status=None)  # type: ignore[arg-type]
