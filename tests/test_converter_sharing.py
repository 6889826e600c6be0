"""The converter's shared values: same records, fewer objects.

Values many jobs hold (model names, learning rates, timestamps, settings
objects) are kept once. That may not change what a record holds or which
payloads are refused: every result here is checked against the same payload
given as read-only mappings, which cattrs' generated functions structure
without sharing anything.
"""

from __future__ import annotations

import gc
import json
import math
import tracemalloc
from types import MappingProxyType
from typing import Any

import cattrs
import pytest
from hypothesis import given, settings
from test_converter import VALID, jobs, malformed_jobs

from finetune_ops import _converter
from finetune_ops._converter import STRUCTURE_ERRORS, structure_job, unstructure
from finetune_ops._records import FineTuneJob, TrainingType
from finetune_ops.testing import Simulator

Json = Any


@pytest.fixture(autouse=True)
def _own_misfit_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Misfits here are warned of in a set of their own: other tests count those warnings."""
    monkeypatch.setattr(_converter, "_warned", set())


def _read_only(value: Json) -> Json:
    """*value* with every object a read-only mapping: what the reference path is given."""
    if type(value) is dict:
        return MappingProxyType({key: _read_only(item) for key, item in value.items()})
    if type(value) is list:
        return [_read_only(item) for item in value]
    return value


def _outcome(payload: Json) -> str:
    """What structuring *payload* gives, exactly: repr tells 1, 1.0, True and -0.0 apart."""
    try:
        job = structure_job(payload)
    except STRUCTURE_ERRORS as error:
        if isinstance(error, cattrs.BaseValidationError):
            return f"{type(error).__name__}: {cattrs.transform_error(error)}"
        return f"{type(error).__name__}"
    return repr((unstructure(job), job.unparsed_fields))


def _same_as_reference(payload: dict[str, Json]) -> None:
    reference = _outcome(_read_only(payload))
    assert _outcome(json.loads(json.dumps(payload))) == reference
    assert _outcome(json.loads(json.dumps(payload))) == reference  # again, from the caches


@settings(max_examples=300)
@given(payload=jobs(extras=True))
def test_valid_jobs_match_the_reference_path(payload: dict[str, Json]) -> None:
    """Any valid job, unknown keys included, gives the record the reference path gives."""
    _same_as_reference(payload)


@settings(max_examples=300)
@given(payload=malformed_jobs())
def test_malformed_jobs_match_the_reference_path(payload: dict[str, Json]) -> None:
    """A job with a misfit field, or no id or status, is kept or refused as by the reference."""
    _same_as_reference(payload)


ODD_VALUES = [
    pytest.param({"learning_rate": True}, id="bool-for-float"),
    pytest.param({"learning_rate": 1}, id="int-for-float"),
    pytest.param({"learning_rate": float("nan")}, id="nan"),
    pytest.param({"learning_rate": float("inf")}, id="infinity"),
    pytest.param({"weight_decay": -0.0}, id="negative-zero"),
    pytest.param({"max_seq_length": 8192.0}, id="integral-float-for-int"),
    pytest.param({"max_seq_length": True}, id="bool-for-int"),
    pytest.param({"max_seq_length": 2**200}, id="huge-int"),
    pytest.param({"learning_rate": 10**400}, id="int-too-large-for-a-float"),
    pytest.param({"n_epochs": 1e300}, id="huge-integral-float"),
    pytest.param({"n_epochs": float("inf")}, id="infinite-int"),
    pytest.param({"model": 7}, id="int-for-text"),
    pytest.param({"training_type": {"type": "Lora", "lora_r": True}}, id="bool-in-settings"),
    pytest.param({"training_type": {"type": "Lora", "lora_r": 8.0}}, id="float-in-settings"),
    pytest.param({"training_method": {"method": "sft", "train_on_inputs": 1}}, id="int-for-flag"),
    pytest.param(
        {"lr_scheduler": {"lr_scheduler_type": "linear", "lr_scheduler_args": {"num_cycles": "1"}}},
        id="text-in-nested-settings",
    ),
    pytest.param(
        {"lr_scheduler": {"lr_scheduler_type": "linear", "lr_scheduler_args": []}},
        id="array-for-nested-settings",
    ),
    pytest.param(
        {"lr_scheduler": {"lr_scheduler_type": "linear", "x": {"y": {"z": 1}}}},
        id="deep-unknown-object",
    ),
    pytest.param({"created_at": "2025-01-01t00:00:00z"}, id="lowercase-timestamp"),
    pytest.param({"created_at": "2025-13-01T00:00:00Z"}, id="bad-timestamp"),
    pytest.param({"id": None}, id="null-id"),
    pytest.param({"status": True}, id="bool-status"),
]


@pytest.mark.parametrize("odd", ODD_VALUES)
def test_odd_values_match_the_reference_path(odd: dict[str, Json]) -> None:
    """Values at the edges of their types are kept, converted or refused as by the reference."""
    # Twice each: once to fill the caches with the plain value, once to be found in them.
    plain = {
        **VALID,
        "learning_rate": 1e-4,
        "weight_decay": 0.0,
        "max_seq_length": 8192,
        "n_epochs": 1,
        "training_type": {"type": "Lora", "lora_r": 1},
        "training_method": {"method": "sft", "train_on_inputs": True},
        "lr_scheduler": {"lr_scheduler_type": "linear", "lr_scheduler_args": {"num_cycles": 1}},
    }
    for payload in (plain, {**plain, **odd}, plain, {**plain, **odd}):
        reference = _outcome(_read_only(payload))
        assert _outcome({**payload}) == reference


def _decoded(**fields: Json) -> dict[str, Json]:
    """A job as a server sends it, decoded anew (no object shared with another call)."""
    return json.loads(json.dumps({**VALID, **fields}))  # type: ignore[no-any-return]


SWEEP = {
    "model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "user_id": "user-be77344828b04a93",
    "created_at": "2026-01-05T10:00:00.125Z",
    "updated_at": "2026-01-05T10:00:00.125Z",
    "max_seq_length": 8192,
    "learning_rate": 1e-4,
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "training_type": {"type": "Lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05},
    "training_method": {"method": "sft", "train_on_inputs": "auto"},
    "lr_scheduler": {
        "lr_scheduler_type": "cosine",
        "lr_scheduler_args": {"min_lr_ratio": 0.0, "num_cycles": 0.5},
    },
}


@pytest.mark.parametrize("misfit", [{}, {"queue_depth": "many"}], ids=["fits", "misfit"])
def test_equal_values_are_one_object(misfit: dict[str, Json]) -> None:
    """Jobs of one sweep hold one copy of each value they share, misfit fields or not."""
    first, second = (structure_job(_decoded(**SWEEP, **misfit)) for _ in range(2))
    assert first == second
    assert first.unparsed_fields == tuple(misfit)
    for name in SWEEP:
        assert getattr(first, name) is getattr(second, name), name
    assert first.created_at is first.updated_at


def test_different_values_are_not_confused() -> None:
    """Values that compare equal but differ (-0.0 and 0.0, 1 and true) stay apart."""
    zero = structure_job(_decoded(weight_decay=0.0)).weight_decay
    negative = structure_job(_decoded(weight_decay=-0.0)).weight_decay
    assert zero == negative == 0.0
    assert math.copysign(1.0, zero) == 1.0  # type: ignore[arg-type]
    assert math.copysign(1.0, negative) == -1.0  # type: ignore[arg-type]
    assert math.isnan(structure_job(_decoded(learning_rate=math.nan)).learning_rate)  # type: ignore[arg-type]

    as_int = structure_job(_decoded(training_type={"type": "Lora", "lora_r": 1}))
    as_bool = structure_job(_decoded(training_type={"type": "Lora", "lora_r": True}))
    assert as_int.training_type == TrainingType(type="Lora", lora_r=1)
    assert as_bool.training_type is None
    assert as_bool.unparsed_fields == ("training_type",)

    flag = structure_job(_decoded(training_method={"method": "sft", "train_on_inputs": True}))
    one = structure_job(_decoded(training_method={"method": "sft", "train_on_inputs": 1}))
    assert flag.training_method is not None
    assert flag.training_method.train_on_inputs is True
    assert one.unparsed_fields == ("training_method",)

    scheduler = {"lr_scheduler_type": "linear", "lr_scheduler_args": {"min_lr_ratio": 0}}
    wrong = {"lr_scheduler_type": "linear", "lr_scheduler_args": {"min_lr_ratio": False}}
    assert structure_job(_decoded(lr_scheduler=scheduler)).lr_scheduler is not None
    assert structure_job(_decoded(lr_scheduler=wrong)).unparsed_fields == ("lr_scheduler",)

    cosine = structure_job(_decoded(lr_scheduler={**scheduler, "lr_scheduler_type": "cosine"}))
    assert cosine.lr_scheduler is not None
    assert cosine.lr_scheduler.lr_scheduler_type == "cosine"


def test_the_kept_values_are_bounded() -> None:
    """However many distinct values arrive, each kind keeps a bounded number of them."""
    for number in range(6000):
        structure_job(
            _decoded(
                model=f"model-{number}",
                max_seq_length=10_000 + number,
                learning_rate=number / 7,
                created_at=f"2026-01-05T10:00:{number % 60:02}.{number:06}Z",
                training_type={"type": f"Lora-{number}"},
            )
        )
    limit = _converter._SHARED_LIMIT_PER_KIND
    assert len(_converter._shared_text) <= limit
    assert len(_converter._shared_ints) <= limit
    assert len(_converter._shared_floats) <= limit
    assert len(_converter._timestamps) <= _converter._TIMESTAMPS_LIMIT


def test_unknown_keys_of_settings_are_not_kept() -> None:
    """A settings object's unknown keys are dropped with it, not held on to by a cache."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(20):
            big = f"{number:02}" + "x" * 100_000
            job = structure_job(_decoded(training_type={"type": "Full", "note": big}))
            assert job.training_type == TrainingType(type="Full")
        del job, big
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 100_000


def test_simulator_jobs_share_their_settings() -> None:
    """A simulator's list entries structure to records that hold few distinct objects."""
    sim = Simulator(seed=3)
    sim.add_jobs(300)
    entries = json.loads(sim._store.list_json())["data"]
    records = [structure_job(entry) for entry in entries]
    assert all(isinstance(job, FineTuneJob) for job in records)
    for name in ("model", "learning_rate", "max_seq_length", "training_type", "lr_scheduler"):
        values = [getattr(job, name) for job in records if getattr(job, name) is not None]
        assert len({id(value) for value in values}) == len(set(values)), name


def test_an_int_too_large_for_a_float_is_a_misfit() -> None:
    """A float field sent as an int beyond float range is left out, as any misfit, not raised."""
    job = structure_job({**VALID, "learning_rate": 10**400, "model": "kept"})
    assert job.learning_rate is None
    assert job.unparsed_fields == ("learning_rate",)
    assert job.model == "kept"
    with pytest.raises(STRUCTURE_ERRORS):
        structure_job({"id": 5, "status": "running", "learning_rate": 10**400})
