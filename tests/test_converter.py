"""The wire format: Together JSON to records and back, tolerant of the new, strict on the wrong."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_ops._converter import (
    STRUCTURE_ERRORS,
    format_timestamp,
    parse_timestamp,
    structure_events,
    structure_job,
    structure_jobs,
    unstructure,
)
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

# The fine-tunes part of the public spec, kept in the repo (scripts/compact_spec.py).
SPEC_PATH = Path(__file__).parent / "spec/fine-tunes.json"

Json = Any


def _field_names(cls: type) -> set[str]:
    """The fields a record reads from the wire (``unparsed_fields`` is ours, not the API's)."""
    return {field.name for field in attrs.fields(cls)} - {"unparsed_fields"}


# --- the published spec -----------------------------------------------------------------


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    """The component schemas of the public Together OpenAPI spec's fine-tunes part."""
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    result: dict[str, Any] = spec["components"]["schemas"]
    return result


def test_spec_truncated_example_parses(schemas: dict[str, Any]) -> None:
    """The spec's example of a truncated job becomes a complete, terminal FineTuneJob."""
    example = schemas["FinetuneResponseTruncated"]["example"]
    job = structure_job(example)
    assert job.id == example["id"]
    assert job.status is JobStatus.COMPLETED
    assert job.is_terminal
    assert job.created_at is not None
    assert job.created_at.tzinfo is not None
    assert job.created_at.microsecond == 123_000
    assert job.events == ()
    assert job.total_price == example["total_price"]
    assert job.model == example["model"]
    assert structure_job(unstructure(job)) == job


@pytest.mark.parametrize(
    ("schema_names", "record"),
    [
        (["FinetuneResponse", "FinetuneResponseTruncated"], FineTuneJob),
        (["FineTuneEvent"], FineTuneEvent),
        (["FullTrainingType", "LoRATrainingType"], TrainingType),
        (["TrainingMethodSFT", "TrainingMethodDPO"], TrainingMethod),
        (["LRScheduler"], LRScheduler),
        (["LinearLRSchedulerArgs", "CosineLRSchedulerArgs"], LRSchedulerArgs),
        (["FineTuneProgress"], Progress),
        (["MultimodalParams"], MultimodalParams),
    ],
)
def test_records_cover_every_spec_property(
    schemas: dict[str, Any], schema_names: list[str], record: type
) -> None:
    """Every property the spec gives these schemas is a field of the matching record."""
    properties: set[str] = set()
    for name in schema_names:
        properties |= set(schemas[name]["properties"])
    assert properties - _field_names(record) == set()


def test_spec_statuses_are_known(schemas: dict[str, Any]) -> None:
    """Every status in the spec's enum is a known JobStatus; user_error is known beyond it."""
    spec_statuses = set(schemas["FinetuneJobStatus"]["enum"])
    assert spec_statuses <= KNOWN_STATUSES
    assert KNOWN_STATUSES - spec_statuses == {"user_error"}


# --- realistic payloads -----------------------------------------------------------------

FULL_JOB: dict[str, Json] = {
    "id": "ft-3b2c1d4e-5f60-4a4a-9999-0123456789ab",
    "status": "running",
    "training_file": "file-9a8b7c6d-0000-4e4e-8888-abcdefabcdef",
    "validation_file": "file-1a2b3c4d-0000-4f4f-7777-fedcbafedcba",
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "model_output_name": "acme/Qwen2.5-7B-Instruct-support-bot-7f3a",
    "model_output_path": "s3://bucket/acme/ft-3b2c1d4e/final",
    "trainingfile_numlines": 12_040,
    "trainingfile_size": 48_123_456,
    "created_at": "2025-02-03T09:15:00.481Z",
    "updated_at": "2025-02-03T10:02:11.9021734Z",
    "started_at": "2025-02-03T09:20:07+00:00",
    "n_epochs": 2,
    "n_checkpoints": 2,
    "n_evals": 4,
    "batch_size": 16,
    "learning_rate": 1e-5,
    "lr_scheduler": {
        "lr_scheduler_type": "cosine",
        "lr_scheduler_args": {"min_lr_ratio": 0.1, "num_cycles": 0.5},
    },
    "warmup_ratio": 0.05,
    "max_grad_norm": 1.0,
    "weight_decay": 0.01,
    "eval_steps": 200,
    "train_on_inputs": "auto",
    "training_method": {"method": "sft", "train_on_inputs": "auto"},
    "training_type": {
        "type": "Lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "lora_trainable_modules": "q_proj,v_proj",
    },
    "multimodal_params": {"train_vision": False},
    "job_id": "job-42",
    "events": [
        {
            "object": "fine-tune-event",
            "created_at": "2025-02-03T09:15:00.481Z",
            "level": "info",
            "message": "Job queued",
            "type": "job_pending",
            "param_count": 0,
            "token_count": 0,
            "total_steps": 0,
            "wandb_url": "",
            "step": 0,
            "checkpoint_path": "",
            "model_path": "",
            "training_offset": 0,
            "hash": "",
        },
        {
            "object": "fine-tune-event",
            "created_at": "2025-02-03T09:40:12.000123Z",
            "level": None,
            "message": "Saved checkpoint at step 400",
            "type": "checkpoint_save",
            "step": 400,
            "checkpoint_path": "s3://bucket/acme/ft-3b2c1d4e/step-400",
        },
    ],
    "token_count": 9_876_543,
    "param_count": 7_615_616_512,
    "total_price": 4200,
    "epochs_completed": 1,
    "queue_depth": 0,
    "wandb_project_name": "support-bot",
    "wandb_name": "qwen-lora-r16",
    "wandb_url": "https://wandb.ai/acme/support-bot/runs/abc123",
    "from_checkpoint": "ft-00000000-1111-4222-8333-444444444444:200",
    "from_hf_model": "acme/base-model",
    "hf_model_revision": "main",
    "progress": {"estimate_available": True, "seconds_remaining": 1_830},
    "random_seed": None,
    "packing": True,
    "max_seq_length": 8192,
    "suffix": "support-bot",
    "user_id": "user-7",
    "owner_address": "0xabc",
}


def test_full_job_parses_every_field() -> None:
    """A full job payload fills every record, nested ones included."""
    job = structure_job(FULL_JOB)
    assert job.status is JobStatus.RUNNING
    assert not job.is_terminal
    assert job.updated_at == datetime(2025, 2, 3, 10, 2, 11, 902173, tzinfo=UTC)
    assert job.batch_size == 16
    assert job.learning_rate == 1e-5
    assert job.lr_scheduler == LRScheduler(
        lr_scheduler_type="cosine",
        lr_scheduler_args=LRSchedulerArgs(min_lr_ratio=0.1, num_cycles=0.5),
    )
    assert job.training_type is not None
    assert job.training_type.is_lora
    assert job.training_type.lora_trainable_modules == "q_proj,v_proj"
    assert job.training_method == TrainingMethod(method="sft", train_on_inputs="auto")
    assert job.multimodal_params == MultimodalParams(train_vision=False)
    assert job.progress == Progress(estimate_available=True, seconds_remaining=1_830)
    assert job.param_count == 7_615_616_512
    assert job.random_seed is None
    assert job.events is not None
    assert len(job.events) == 2
    assert job.events[0].type == "job_pending"
    assert job.events[1].level is None
    assert job.events[1].step == 400
    every_key_set = {k for k, v in FULL_JOB.items() if v is not None}
    assert {k for k in every_key_set if getattr(job, k) is None} == set()


def test_dpo_and_full_training_parse() -> None:
    """DPO settings and full (non-LoRA) training are read."""
    job = structure_job(
        {
            "id": "ft-1",
            "status": "queued",
            "batch_size": "max",
            "train_on_inputs": False,
            "training_type": {"type": "Full"},
            "training_method": {
                "method": "dpo",
                "dpo_beta": 0.1,
                "rpo_alpha": 0,
                "dpo_normalize_logratios_by_length": True,
                "dpo_reference_free": False,
                "simpo_gamma": 0.5,
            },
            "lr_scheduler": {"lr_scheduler_type": "linear", "lr_scheduler_args": None},
        }
    )
    assert job.batch_size == "max"
    assert job.train_on_inputs is False
    assert job.training_type == TrainingType(type="Full")
    assert not job.training_type.is_lora
    assert job.training_method == TrainingMethod(
        method="dpo",
        dpo_beta=0.1,
        rpo_alpha=0.0,
        dpo_normalize_logratios_by_length=True,
        dpo_reference_free=False,
        simpo_gamma=0.5,
    )
    assert job.training_method is not None
    assert type(job.training_method.rpo_alpha) is float
    assert job.lr_scheduler == LRScheduler(lr_scheduler_type="linear")


def test_unknown_enumerations_are_kept() -> None:
    """Unknown status, training type, method, scheduler and event strings survive as sent."""
    job = structure_job(
        {
            "id": "ft-1",
            "status": "hibernating",
            "training_type": {"type": "QLora", "lora_r": 4, "lora_alpha": 8},
            "training_method": {"method": "grpo"},
            "lr_scheduler": {"lr_scheduler_type": "warmup_stable_decay"},
            "events": [{"type": "job_teleported", "level": "legacy_iwarning"}],
        }
    )
    assert type(job.status) is JobStatus
    assert job.status == "hibernating"
    assert not job.status.is_known
    assert not job.is_terminal
    assert job.training_type == TrainingType(type="QLora", lora_r=4, lora_alpha=8)
    assert job.training_method == TrainingMethod(method="grpo")
    assert job.lr_scheduler == LRScheduler(lr_scheduler_type="warmup_stable_decay")
    assert job.events == (FineTuneEvent(type="job_teleported", level="legacy_iwarning"),)
    assert unstructure(job)["status"] == "hibernating"


def test_user_error_is_terminal() -> None:
    """A job in user_error, which the spec omits, is terminal."""
    job = structure_job({"id": "ft-1", "status": "user_error"})
    assert job.status is JobStatus.USER_ERROR
    assert job.is_terminal


def test_known_statuses_are_shared_instances() -> None:
    """Structuring a known status reuses the class constant instead of a new object."""
    jobs = structure_jobs([{"id": f"ft-{i}", "status": "cancelled"} for i in range(3)])
    assert all(job.status is JobStatus.CANCELLED for job in jobs)


def test_unknown_keys_and_nulls_are_tolerated() -> None:
    """Unknown keys at any level are ignored and null reads as None."""
    job = structure_job(
        {
            "id": "ft-1",
            "status": "pending",
            "object": "fine-tune",
            "brand_new_field": {"nested": [1, 2, 3]},
            "model": None,
            "events": None,
            "progress": {"estimate_available": False, "seconds_remaining": None, "eta": "soon"},
            "training_type": {"type": "Lora", "lora_r": 8, "lora_alpha": 8, "rank_pattern": {}},
        }
    )
    assert job.model is None
    assert job.events is None
    assert job.progress == Progress(estimate_available=False)
    assert job.training_type == TrainingType(type="Lora", lora_r=8, lora_alpha=8)


def test_numbers_are_normalised() -> None:
    """An integral float is accepted for an integer field and an int becomes a float."""
    job = structure_job(
        {"id": "ft-1", "status": "running", "total_price": 1500.0, "learning_rate": 1}
    )
    assert job.total_price == 1500
    assert type(job.total_price) is int
    assert job.learning_rate == 1.0
    assert type(job.learning_rate) is float


def test_structure_events_reads_the_events_list() -> None:
    """structure_events turns the data array of the events call into a tuple of events."""
    events = structure_events(FULL_JOB["events"])
    assert isinstance(events, tuple)
    assert [e.type for e in events] == ["job_pending", "checkpoint_save"]
    assert events[0].object == "fine-tune-event"
    assert events[1].created_at == datetime(2025, 2, 3, 9, 40, 12, 123, tzinfo=UTC)
    assert structure_events([]) == ()


def test_structure_jobs_reads_the_list_data() -> None:
    """structure_jobs turns the data array of the list call into jobs, in order."""
    jobs = structure_jobs([FULL_JOB, {"id": "ft-2", "status": "cancel_requested"}])
    assert [job.id for job in jobs] == [FULL_JOB["id"], "ft-2"]
    assert jobs[1].status is JobStatus.CANCEL_REQUESTED


# --- timestamps -------------------------------------------------------------------------

BASE = datetime(2023, 5, 17, 17, 35, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-17T17:35:45Z", BASE),
        ("2023-05-17T17:35:45+00:00", BASE),
        ("2023-05-17T17:35:45-00:00", BASE),
        ("2023-05-17T17:35:45", BASE),
        ("2023-05-17 17:35:45", BASE),
        ("2023-05-17t17:35:45z", BASE),
        ("2023-05-17T17:35:45.1Z", BASE.replace(microsecond=100_000)),
        ("2023-05-17T17:35:45.123Z", BASE.replace(microsecond=123_000)),
        ("2023-05-17T17:35:45.123456Z", BASE.replace(microsecond=123_456)),
        ("2023-05-17T17:35:45.1234567Z", BASE.replace(microsecond=123_456)),
        ("2023-05-17T17:35:45.123456789Z", BASE.replace(microsecond=123_456)),
        ("2023-05-17T17:35:45.123456789", BASE.replace(microsecond=123_456)),
        ("2023-05-17T19:35:45.123+02:00", BASE.replace(microsecond=123_000)),
        ("2023-05-17T12:05:45.1234567-05:30", BASE.replace(microsecond=123_456)),
    ],
)
def test_timestamp_forms(text: str, expected: datetime) -> None:
    """Z, offsets, naive (as UTC) and 0 to 9 fractional digits all give the same aware instant."""
    parsed = parse_timestamp(text)
    assert parsed.tzinfo is not None
    assert parsed == expected
    job = structure_job({"id": "ft-1", "status": "running", "created_at": text})
    assert job.created_at == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (BASE, "2023-05-17T17:35:45Z"),
        (BASE.replace(microsecond=123_000), "2023-05-17T17:35:45.123000Z"),
        (BASE.replace(tzinfo=None), "2023-05-17T17:35:45Z"),
        (BASE.astimezone(timezone(timedelta(hours=2))), "2023-05-17T19:35:45+02:00"),
    ],
)
def test_timestamp_format(value: datetime, expected: str) -> None:
    """UTC and naive datetimes are written with Z; other offsets are kept."""
    assert format_timestamp(value) == expected


def test_unstructured_timestamps_use_z() -> None:
    """Timestamps in an unstructured job end in Z for UTC."""
    job = structure_job({"id": "ft-1", "status": "running", "created_at": "2023-05-17T17:35:45"})
    assert unstructure(job)["created_at"] == "2023-05-17T17:35:45Z"


# --- unstructure and round trip ---------------------------------------------------------


def test_unstructure_looks_like_wire_json() -> None:
    """None fields are left out, tuples become lists and statuses plain strings."""
    job = FineTuneJob(
        id="ft-1",
        status=JobStatus.CANCELLED,
        events=(FineTuneEvent(type="job_stopped"),),
        progress=Progress(estimate_available=False),
    )
    data = unstructure(job)
    assert data == {
        "id": "ft-1",
        "status": "cancelled",
        "events": [{"type": "job_stopped"}],
        "progress": {"estimate_available": False},
    }
    assert type(data["status"]) is str


def test_full_job_round_trips() -> None:
    """structure(unstructure(job)) gives back the same job, and no known field is lost."""
    job = structure_job(FULL_JOB)
    data = unstructure(job)
    assert structure_job(data) == job
    assert set(data) == {k for k, v in FULL_JOB.items() if v is not None}
    assert data["created_at"] == "2025-02-03T09:15:00.481000Z"
    assert data["events"][0] == {**FULL_JOB["events"][0], "created_at": data["created_at"]}


def test_unstructure_list_of_jobs() -> None:
    """A list of jobs unstructures to a list of dicts."""
    jobs = structure_jobs([{"id": "ft-1", "status": "queued"}])
    assert unstructure(jobs) == [{"id": "ft-1", "status": "queued"}]


# --- malformed data ---------------------------------------------------------------------

VALID = {"id": "ft-1", "status": "running"}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"status": "running"}, id="no-id"),
        pytest.param({"id": "ft-1"}, id="no-status"),
        pytest.param({"id": "ft-1", "status": None}, id="null-status"),
        pytest.param({"id": "ft-1", "status": 3}, id="int-status"),
        pytest.param({"id": "ft-1", "status": ["running"]}, id="list-status"),
        pytest.param({"id": 17, "status": "running"}, id="int-id"),
        pytest.param([VALID], id="list-job"),
        pytest.param("ft-1", id="string-job"),
        pytest.param(None, id="null-job"),
    ],
)
def test_malformed_jobs_raise_structure_errors(payload: Json) -> None:
    """Data that cannot be a job (no usable id or status, not an object) raises STRUCTURE_ERRORS."""
    with pytest.raises(STRUCTURE_ERRORS):
        structure_job(payload)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({**VALID, "events": "job_start"}, id="string-events"),
        pytest.param({**VALID, "events": {"type": "job_start"}}, id="object-events"),
        pytest.param({**VALID, "events": [1]}, id="int-event"),
        pytest.param({**VALID, "events": [[]]}, id="list-event"),
        pytest.param({**VALID, "training_type": []}, id="list-training-type"),
        pytest.param({**VALID, "training_type": "Lora"}, id="string-training-type"),
        pytest.param({**VALID, "training_type": {"lora_r": 8}}, id="training-type-no-type"),
        pytest.param({**VALID, "training_method": {}}, id="training-method-no-method"),
        pytest.param({**VALID, "lr_scheduler": {"lr_scheduler_args": {}}}, id="scheduler-no-type"),
        pytest.param({**VALID, "progress": {"seconds_remaining": 5}}, id="progress-no-flag"),
        pytest.param({**VALID, "created_at": "yesterday"}, id="bad-timestamp"),
        pytest.param({**VALID, "created_at": 1_684_344_945}, id="epoch-timestamp"),
        pytest.param({**VALID, "total_price": "1500"}, id="string-int"),
        pytest.param({**VALID, "total_price": True}, id="bool-int"),
        pytest.param({**VALID, "total_price": 12.5}, id="fractional-int"),
        pytest.param({**VALID, "learning_rate": "1e-5"}, id="string-float"),
        pytest.param({**VALID, "packing": 1}, id="int-bool"),
        pytest.param({**VALID, "batch_size": 8.5}, id="float-batch-size"),
        pytest.param({**VALID, "model": {"name": "x"}}, id="object-string"),
    ],
)
def test_a_field_that_does_not_fit_is_left_out(
    payload: dict[str, Json], caplog: pytest.LogCaptureFixture
) -> None:
    """A field of the wrong shape is None and named in unparsed_fields; the job still parses."""
    [name] = set(payload) - set(VALID)
    job = structure_job({**payload, "model": "kept"} if name != "model" else payload)
    assert job.id == "ft-1"
    assert job.status == "running"
    assert getattr(job, name) is None
    assert job.unparsed_fields == (name,)
    if name != "model":
        assert job.model == "kept"


def test_a_misfit_field_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """One warning per field name, not one per job."""
    caplog.set_level(logging.WARNING, logger="finetune_ops")
    for number in range(5):
        structure_job({"id": f"ft-{number}", "status": "running", "queue_depth": "many"})
    assert caplog.text.count("'queue_depth'") == 1


def test_validation_error_says_where() -> None:
    """cattrs.transform_error names the offending field path of a nested problem."""
    with pytest.raises(cattrs.BaseValidationError) as info:
        structure_jobs([VALID, {"status": "running"}])
    messages = cattrs.transform_error(info.value)
    assert any("$[1].id" in message for message in messages)


@pytest.mark.parametrize("items", [{"data": []}, "ft-1", None, 3])
def test_list_helpers_require_arrays(items: Json) -> None:
    """structure_jobs and structure_events refuse anything but a JSON array."""
    with pytest.raises(STRUCTURE_ERRORS):
        structure_jobs(items)
    with pytest.raises(STRUCTURE_ERRORS):
        structure_events(items)


def test_structure_errors_are_plain_exceptions() -> None:
    """Every type in STRUCTURE_ERRORS is an Exception subclass (never BaseException only)."""
    assert all(issubclass(exc, Exception) for exc in STRUCTURE_ERRORS)


# --- property-based ---------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)

_OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
)
_DATETIMES = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1))
TIMESTAMPS = st.one_of(
    _DATETIMES.map(lambda d: d.isoformat()),
    _DATETIMES.map(lambda d: d.isoformat() + "Z"),
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), _DATETIMES, _OFFSETS),
)
TEXT = st.text(max_size=12)
INTS = st.integers(min_value=-(2**63), max_value=2**63)
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000)
BOOLS = st.booleans()
STATUSES = st.sampled_from(sorted(KNOWN_STATUSES)) | TEXT


def opt(strategy: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    """The strategy or null."""
    return st.none() | strategy


def with_extras(
    strategy: st.SearchStrategy[dict[str, Json]], cls: type, extras: bool
) -> st.SearchStrategy[dict[str, Json]]:
    """Objects from *strategy*, plus (if *extras*) unknown keys with arbitrary JSON values."""
    if not extras:
        return strategy
    known = _field_names(cls)
    unknown = st.dictionaries(
        TEXT.filter(lambda key: key not in known), JSON_VALUES, min_size=1, max_size=3
    )
    return st.builds(lambda data, more: {**more, **data}, strategy, unknown)


def record(
    cls: type,
    required: dict[str, st.SearchStrategy[Json]],
    optional: dict[str, st.SearchStrategy[Json]],
    extras: bool,
) -> st.SearchStrategy[dict[str, Json]]:
    """A JSON object for *cls*: required keys always, optional keys (or null) sometimes."""
    assert set(required) | set(optional) == _field_names(cls), cls
    strategy = st.fixed_dictionaries(required, optional={k: opt(v) for k, v in optional.items()})
    return with_extras(strategy, cls, extras)


# Field kinds of FineTuneJob, used to build valid and wrong values.
JOB_TEXT = [
    "user_id", "owner_address", "training_file", "validation_file", "model",
    "model_output_name", "model_output_path", "suffix", "job_id", "wandb_project_name",
    "wandb_name", "wandb_url", "from_checkpoint", "from_hf_model", "hf_model_revision",
]  # fmt: skip
JOB_INTS = [
    "total_price", "token_count", "param_count", "max_seq_length", "trainingfile_numlines",
    "trainingfile_size", "n_epochs", "n_evals", "n_checkpoints", "eval_steps", "random_seed",
    "epochs_completed", "queue_depth",
]  # fmt: skip
JOB_FLOATS = ["learning_rate", "warmup_ratio", "max_grad_norm", "weight_decay"]
JOB_TIMES = ["created_at", "updated_at", "started_at"]
JOB_RECORDS = [
    "lr_scheduler", "training_type", "training_method", "multimodal_params", "progress",
]  # fmt: skip


def jobs(extras: bool = False) -> st.SearchStrategy[dict[str, Json]]:
    """Valid job payloads, optionally with unknown keys at every level."""
    event = record(
        FineTuneEvent,
        {},
        {
            "object": TEXT, "created_at": TIMESTAMPS, "level": TEXT, "message": TEXT,
            "type": TEXT, "param_count": INTS, "token_count": INTS, "total_steps": INTS,
            "wandb_url": TEXT, "step": INTS, "checkpoint_path": TEXT, "model_path": TEXT,
            "training_offset": INTS, "hash": TEXT,
        },
        extras,
    )  # fmt: skip
    scheduler_args = record(
        LRSchedulerArgs, {}, {"min_lr_ratio": FLOATS, "num_cycles": FLOATS}, extras
    )
    nested = {
        "lr_scheduler": record(
            LRScheduler,
            {"lr_scheduler_type": st.sampled_from(["linear", "cosine"]) | TEXT},
            {"lr_scheduler_args": scheduler_args},
            extras,
        ),
        "training_type": record(
            TrainingType,
            {"type": st.sampled_from(["Full", "Lora"]) | TEXT},
            {
                "lora_r": INTS,
                "lora_alpha": INTS,
                "lora_dropout": FLOATS,
                "lora_trainable_modules": TEXT,
            },
            extras,
        ),
        "training_method": record(
            TrainingMethod,
            {"method": st.sampled_from(["sft", "dpo"]) | TEXT},
            {
                "train_on_inputs": BOOLS | st.just("auto"),
                "dpo_beta": FLOATS,
                "rpo_alpha": FLOATS,
                "dpo_normalize_logratios_by_length": BOOLS,
                "dpo_reference_free": BOOLS,
                "simpo_gamma": FLOATS,
            },
            extras,
        ),
        "multimodal_params": record(MultimodalParams, {}, {"train_vision": BOOLS}, extras),
        "progress": record(
            Progress, {"estimate_available": BOOLS}, {"seconds_remaining": INTS}, extras
        ),
    }
    optional: dict[str, st.SearchStrategy[Json]] = {
        **dict.fromkeys(JOB_TEXT, TEXT),
        **dict.fromkeys(JOB_INTS, INTS),
        **dict.fromkeys(JOB_FLOATS, FLOATS),
        **dict.fromkeys(JOB_TIMES, TIMESTAMPS),
        **nested,
        "events": st.lists(event, max_size=3),
        "packing": BOOLS,
        "batch_size": INTS | st.just("max"),
        "train_on_inputs": BOOLS | st.just("auto"),
    }
    return record(FineTuneJob, {"id": TEXT, "status": STATUSES}, optional, extras)


@settings(max_examples=200)
@given(payload=jobs(extras=True))
def test_extra_keys_everywhere_never_crash(payload: dict[str, Json]) -> None:
    """Unknown keys with any JSON value, at any level, are ignored."""
    job = structure_job(payload)
    assert job.id == payload["id"]
    assert job.status == payload["status"]


@given(status=st.text())
def test_any_status_string_is_kept(status: str) -> None:
    """Any status string structures to a JobStatus, terminal only for the four final ones."""
    job = structure_job({"id": "ft-1", "status": status})
    assert type(job.status) is JobStatus
    assert job.status == status
    assert job.is_terminal is (status in TERMINAL_STATUSES)


@settings(max_examples=200)
@given(payload=jobs())
def test_valid_jobs_round_trip(payload: dict[str, Json]) -> None:
    """For any valid job, structure(unstructure(job)) == job and no non-null key is lost."""
    job = structure_job(payload)
    data = unstructure(job)
    assert structure_job(data) == job
    assert set(data) == {k for k, v in payload.items() if v is not None}


def _wrong_values() -> dict[str, st.SearchStrategy[Json]]:
    """For each kind of job field, JSON values of the wrong type."""
    containers = st.lists(JSON_SCALARS, max_size=2) | st.dictionaries(
        TEXT, JSON_SCALARS, max_size=2
    )
    return {
        "text": st.integers() | st.floats(allow_nan=False) | BOOLS | containers,
        "int": TEXT
        | BOOLS
        | containers
        | st.floats(allow_nan=False).filter(lambda x: not x.is_integer()),
        "float": TEXT | BOOLS | containers,
        "bool": TEXT | st.integers() | st.floats(allow_nan=False) | containers,
        "time": st.integers() | BOOLS | containers | st.sampled_from(["", "now", "2023-13-40"]),
        "record": st.integers() | TEXT | BOOLS | st.lists(JSON_VALUES, max_size=2),
        "events": st.integers() | TEXT | BOOLS | st.dictionaries(TEXT, JSON_VALUES, max_size=2),
        "status": st.none() | st.integers() | BOOLS | containers,
        "batch_size": BOOLS
        | containers
        | st.floats(allow_nan=False).filter(lambda x: not x.is_integer()),
        "train_on_inputs": st.integers() | st.floats(allow_nan=False) | containers,
    }


_KIND_OF: dict[str, str] = {
    **dict.fromkeys([*JOB_TEXT, "id"], "text"),
    **dict.fromkeys(JOB_INTS, "int"),
    **dict.fromkeys(JOB_FLOATS, "float"),
    **dict.fromkeys(JOB_TIMES, "time"),
    **dict.fromkeys(JOB_RECORDS, "record"),
    "packing": "bool",
    "events": "events",
    "status": "status",
    "batch_size": "batch_size",
    "train_on_inputs": "train_on_inputs",
}


def test_field_kinds_cover_the_job() -> None:
    """The test's field classification misses no FineTuneJob field."""
    assert set(_KIND_OF) == _field_names(FineTuneJob)


WRONG_VALUES = _wrong_values()


@st.composite
def malformed_jobs(draw: Callable[..., Any]) -> dict[str, Json]:
    """Valid jobs with one field of the wrong type, or without id or status."""
    payload: dict[str, Json] = draw(jobs())
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(_KIND_OF)))
        return {**payload, name: draw(WRONG_VALUES[_KIND_OF[name]])}
    missing = draw(st.sampled_from(["id", "status"]))
    return {k: v for k, v in payload.items() if k != missing}


@settings(max_examples=300)
@given(payload=malformed_jobs())
def test_malformed_jobs_always_raise_structure_errors(payload: dict[str, Json]) -> None:
    """A job without a usable id or status raises; any other misfit field is left out."""
    if type(payload.get("id")) is str and isinstance(payload.get("status"), str):
        job = structure_job(payload)
        assert len(job.unparsed_fields) == 1
        assert getattr(job, job.unparsed_fields[0]) is None
    else:
        with pytest.raises(STRUCTURE_ERRORS):
            structure_job(payload)


@given(payload=JSON_VALUES)
def test_arbitrary_json_gives_a_job_or_a_structure_error(payload: Json) -> None:
    """Any JSON value either is a job or raises one of STRUCTURE_ERRORS, nothing else."""
    try:
        job = structure_job(payload)
    except STRUCTURE_ERRORS:
        return
    assert isinstance(job, FineTuneJob)


def test_shared_settings_records_are_reused() -> None:
    """Jobs with the same training settings share one frozen record instead of a copy each."""
    common = {
        "training_type": {"type": "Lora", "lora_r": 8, "lora_alpha": 16},
        "training_method": {"method": "sft", "train_on_inputs": "auto"},
        "lr_scheduler": {"lr_scheduler_type": "linear", "lr_scheduler_args": {"min_lr_ratio": 0}},
    }
    first = structure_job({"id": "ft-a", "status": "running", **common})
    second = structure_job({"id": "ft-b", "status": "running", **common})
    assert first.training_type is second.training_type
    assert first.training_method is second.training_method
    assert first.lr_scheduler is second.lr_scheduler
    other = structure_job({"id": "ft-c", "status": "running", "training_type": {"type": "Full"}})
    assert other.training_type != first.training_type
