"""The wire format: turning Together API JSON into records and back.

One private cattrs converter, built once by :func:`make_converter`, owns every
rule about the JSON. The records in ``_records`` know nothing of it.

Structuring (JSON -> records) is tolerant of what servers legitimately do and
strict about what cannot be a job:

- unknown keys are ignored at every level; missing optional keys and ``null``
  become ``None``;
- unknown statuses are kept as :class:`JobStatus` values (not terminal), and
  unknown training types, methods, scheduler kinds, event types and levels are
  kept as plain strings;
- timestamps are ISO 8601 strings, with ``Z`` or a UTC offset, with or without
  fractional seconds (any number of digits; beyond microseconds they are
  truncated); a timestamp without an offset is taken as UTC. Records always hold
  timezone-aware datetimes;
- scalars must have their JSON type: a string where a string is expected, a
  number where a number is expected (``true`` is not a number), a boolean where
  a boolean is expected. The only leniency is an integral float such as
  ``1500.0`` for an integer field;
- a list or string where an object is expected, an object or string where a
  list is expected, an unparseable timestamp: all are errors, except inside a
  job: there only ``id`` and ``status`` must fit. Any other field that does not
  is left ``None`` and named in ``FineTuneJob.unparsed_fields`` (logged once per
  field name), so that a server sending one field in a new shape never costs a
  caller the job it needs.

Errors: structuring raises only the exception types in :data:`STRUCTURE_ERRORS`,
all plain ``Exception`` subclasses (``RecursionError`` among them, for data
nested deeper than Python can follow):

- :class:`TypeError` when the value handed to a helper has the wrong JSON shape
  at the top (``structure_job`` given a list, string or ``None``;
  ``structure_jobs`` or ``structure_events`` given anything but a list);
- :class:`cattrs.BaseValidationError` for everything found inside: in practice
  :class:`cattrs.ClassValidationError` (inside an object) or
  :class:`cattrs.IterableValidationError` (inside a list). Both are
  exception groups that collect every problem (``KeyError`` for a missing
  required key, ``TypeError`` for a wrong JSON type, ``ValueError`` for a bad
  timestamp), and ``cattrs.transform_error(exc)`` turns them into readable
  ``"... @ $.training_type.lora_r"`` lines;
- with ``make_converter(detailed_validation=False)`` the same problems surface
  as the bare :class:`KeyError`, :class:`TypeError` or :class:`ValueError`,
  first one only. The module's own converter keeps detailed validation: it
  costs no measurable speed here.

The HTTP layer catches ``STRUCTURE_ERRORS`` and raises its own "invalid
response" error from it.

Unstructuring (records -> JSON-ready data) is the inverse and looks like the
wire JSON: fields that are ``None`` are left out, tuples become lists, statuses
become plain strings, datetimes become ISO 8601 strings with ``Z`` for UTC (other
offsets are kept). For every known field, ``structure(unstructure(job)) == job``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import NoneType, UnionType
from typing import Any, Final, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
from cattrs.gen import make_dict_structure_fn, override

from ._records import (
    KNOWN_STATUSES,
    FineTuneCheckpoint,
    FineTuneEvent,
    FineTuneJob,
    JobStatus,
    LRScheduler,
    LRSchedulerArgs,
    MultimodalParams,
    TrainingMethod,
    TrainingType,
)

__all__ = [
    "STRUCTURE_ERRORS",
    "brief_job",
    "describe_error",
    "format_timestamp",
    "make_converter",
    "parse_timestamp",
    "structure_checkpoints",
    "structure_events",
    "structure_job",
    "structure_jobs",
    "unstructure",
]

logger = logging.getLogger("finetune_ops")

#: Every exception type that structuring malformed data can raise.
STRUCTURE_ERRORS: Final[tuple[type[Exception], ...]] = (
    cattrs.BaseValidationError,
    TypeError,
    ValueError,
    KeyError,
    RecursionError,
)

_Hook = Callable[[Any, Any], Any]

# Known statuses are shared instances: 100,000 jobs hold ten status objects.
_STATUS_BY_VALUE: Final[dict[str, JobStatus]] = {str(s): s for s in KNOWN_STATUSES}

#: Records worth sharing between jobs, and how many distinct values of each to keep.
_SHARED_RECORDS: Final = frozenset(
    {LRScheduler, LRSchedulerArgs, MultimodalParams, TrainingMethod, TrainingType}
)
_SHARED_LIMIT: Final = 256

# --- values many jobs share -------------------------------------------------------------
#
# 100,000 jobs of one sweep hold a few distinct models, users, learning rates and
# sequence lengths. Each distinct value of these fields is kept once, so the jobs
# point at one copy.


def _keep(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> Any:
    """Store *value* under *key*; a full cache starts over, so it stays bounded and current."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


_SHARED_LIMIT_PER_KIND: Final = 4096
_shared_text: dict[str, str] = {}
_shared_ints: dict[int, int] = {}
_shared_floats: dict[float, float] = {}
_ZERO: Final = 0.0


def _one_copy(kept: dict[Any, Any], value: Any) -> Any:
    """The copy of *value* kept in *kept*, which keeps it if it is new.

    Each cache holds values of one exact type, so an equal True or 1.0 never
    comes back for an int. 0.0 and -0.0 are equal keys but not the same value,
    so neither is stored: 0.0 is one constant, -0.0 stays itself. NaN never
    equals itself: not stored.
    """
    found = kept.get(value)
    if found is not None:
        return found
    if type(value) is float:
        if not value:
            return _ZERO if math.copysign(1.0, value) > 0 else value
        if value != value:
            return value
    return _keep(kept, value, value, _SHARED_LIMIT_PER_KIND)


#: The job fields whose values are shared: the JSON type shared, and the values kept.
_SHARED_FIELDS: Final[dict[str, tuple[type, dict[Any, Any]]]] = {
    **dict.fromkeys(
        (
            "model",
            "user_id",
            "owner_address",
            "suffix",
            "validation_file",
            "wandb_project_name",
            "from_checkpoint",
            "from_hf_model",
            "hf_model_revision",
        ),
        (str, _shared_text),
    ),
    # Small ints are shared by Python itself; these fields hold larger ones.
    **dict.fromkeys(
        (
            "param_count",
            "max_seq_length",
            "trainingfile_numlines",
            "trainingfile_size",
            "eval_steps",
        ),
        (int, _shared_ints),
    ),
    **dict.fromkeys(
        ("learning_rate", "warmup_ratio", "max_grad_norm", "weight_decay"),
        (float, _shared_floats),
    ),
}


def _share_values(value: dict[str, Any]) -> None:
    """Replace the shared fields' values in ``value`` by their kept copies.

    The dict is a decoded answer, ours to change.
    """
    for name, (kind, kept) in _SHARED_FIELDS.items():
        raw = value.get(name)
        if type(raw) is kind:
            value[name] = _one_copy(kept, raw)


_SCALARS: Final[frozenset[type]] = frozenset({str, int, float, bool, NoneType})


# --- timestamps -------------------------------------------------------------------------


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp into an aware datetime; no offset means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # A lowercase "t" or "z" is valid ISO 8601 but refused by fromisoformat.
        upper = value.upper()
        if upper == value:
            raise
        try:
            parsed = datetime.fromisoformat(upper)
        except ValueError:
            raise ValueError(f"invalid ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed


def format_timestamp(value: datetime) -> str:
    """Format a datetime as ISO 8601, with ``Z`` for UTC; a naive one is taken as UTC."""
    offset = value.utcoffset()
    if offset is None:
        return value.isoformat() + "Z"
    if not offset:
        return value.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()


# Parsed timestamps by their text: a job's created_at, started_at and updated_at are
# often one instant, and jobs created or cancelled together may share one too.
# Datetimes are immutable, so one parsed copy serves them all; the cache starts
# over when full, keeping the recent instants.
_timestamps: dict[str, datetime] = {}
_TIMESTAMPS_LIMIT: Final = 1024


def _structure_timestamp(value: object, _: object) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    parsed = _timestamps.get(value)
    if parsed is None:
        parsed = parse_timestamp(value)
        _keep(_timestamps, value, parsed, _TIMESTAMPS_LIMIT)
    return parsed


# --- scalars ----------------------------------------------------------------------------


def _structure_status(value: object, _: object) -> JobStatus:
    if isinstance(value, str):
        known = _STATUS_BY_VALUE.get(value)
        return known if known is not None else JobStatus(value)
    raise TypeError(f"expected a status string, got {type(value).__name__}")


def _is_scalar_union(tp: Any) -> bool:
    """Whether *tp* is a union of JSON scalar types only, such as ``int | str | None``."""
    if get_origin(tp) not in (Union, UnionType):
        return False
    return all(arg in _SCALARS for arg in get_args(tp))


def _scalar_hook(*members: type) -> _Hook:
    """A structure hook that accepts values of exactly the given JSON scalar types.

    ``bool`` never passes for a number. An ``int`` passes for ``float`` (as a
    float), an integral ``float`` for ``int`` (as an int), and a ``str`` subclass
    for ``str`` (as a plain string).
    """
    exact = frozenset(members)
    wants_str = str in exact
    wants_int = int in exact
    wants_float = float in exact
    expected = " or ".join("null" if m is NoneType else m.__name__ for m in members)

    def structure_scalar(value: object, _: object) -> Any:
        kind = type(value)
        if kind in exact:
            return value
        if kind is int and wants_float:
            try:
                return float(value)  # type: ignore[arg-type]
            except OverflowError:  # not one of STRUCTURE_ERRORS: said as a ValueError
                raise ValueError(f"{expected} expected, got an int too large for a float") from None
        if kind is float and wants_int and value.is_integer():  # type: ignore[attr-defined]
            return int(value)  # type: ignore[call-overload]
        if wants_str and isinstance(value, str):
            return str(value)
        raise TypeError(f"expected {expected}, got {kind.__name__}")

    return structure_scalar


def _scalar_union_factory(tp: Any) -> _Hook:
    return _scalar_hook(*get_args(tp))


def _is_optional(tp: Any) -> bool:
    """Whether *tp* is ``X | None`` for one non-scalar ``X`` (a record or an array)."""
    if get_origin(tp) not in (Union, UnionType):
        return False
    args = get_args(tp)
    return len(args) == 2 and NoneType in args and not _is_scalar_union(tp)


def _optional_factory(tp: Any, converter: cattrs.Converter) -> _Hook:
    """Like cattrs' own optional handling, but looks the inner hook up once, not per value."""
    (inner_type,) = (arg for arg in get_args(tp) if arg is not NoneType)
    inner = converter.get_structure_hook(inner_type)

    def structure_optional(value: object, _: object) -> Any:
        return None if value is None else inner(value, inner_type)

    return structure_optional


# --- containers -------------------------------------------------------------------------


def _is_array(tp: Any) -> bool:
    """Whether *tp* is ``list[X]`` or ``tuple[X, ...]``, which JSON sends as an array."""
    origin = get_origin(tp)
    if origin is list:
        return True
    args = get_args(tp)
    return origin is tuple and len(args) == 2 and args[1] is Ellipsis


def _array_factory(tp: Any, converter: cattrs.Converter) -> _Hook:
    """Structure JSON arrays only; cattrs alone would iterate a string or an object's keys."""
    if get_origin(tp) is tuple:
        inner = homogenous_tuple_structure_factory(tp, converter)
    else:
        inner = list_structure_factory(tp, converter)

    def structure_array(value: object, _: object) -> Any:
        if type(value) is not list and not isinstance(value, list | tuple):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return inner(value, tp)

    return structure_array


def _field_names(cls: Any) -> frozenset[str]:
    return frozenset(field.name for field in attrs.fields(cls))


def _record_factory(cls: Any, converter: cattrs.Converter) -> _Hook:
    """Structure JSON objects only, through cattrs' generated function for *cls*.

    Small settings records that most jobs share (the same training type, method
    and scheduler) are structured once per distinct value and then reused: they
    are frozen, and 100,000 jobs then hold a handful of them, not 400,000. An
    object sent again key for key, value for value and type for type is found
    without being structured again.
    """
    inner = make_dict_structure_fn(cls, converter)
    if cls not in _SHARED_RECORDS:

        def structure_record(value: object, _: object) -> Any:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise TypeError(
                    f"expected an object for {cls.__name__}, got {type(value).__name__}"
                )
            return inner(value, cls)

        return structure_record

    shared: dict[Any, Any] = {}  # record -> the one kept
    # An object as sent -> its record. The key is its items and their types (a nested
    # object of plain values, the scheduler's arguments, in the same form), and only
    # objects of known keys are kept, so that a key holds nothing its record does not.
    by_raw: dict[tuple[Any, ...], Any] = {}
    names = _field_names(cls)
    nested = {
        field.name: _field_names(arg)
        for field in attrs.fields(attrs.resolve_types(cls))
        for arg in get_args(field.type)
        if arg in _SHARED_RECORDS
    }

    def nested_key(value: dict[str, Any], types: tuple[type, ...]) -> tuple[Any, ...] | None:
        items = []
        for name, item in value.items():
            if type(item) is dict:
                item_types = tuple(map(type, item.values()))
                if name not in nested or not _SCALARS.issuperset(item_types):
                    return None
                item = (tuple(item.items()), item_types)
            elif type(item) not in _SCALARS:
                return None
            items.append((name, item))
        return (tuple(items), types)

    def known_keys(value: dict[str, Any]) -> bool:
        return value.keys() <= names and all(
            type(item) is not dict or item.keys() <= nested[name] for name, item in value.items()
        )

    def structure_shared_record(value: object, _: object) -> Any:
        key = None
        if type(value) is dict:
            types = tuple(map(type, value.values()))
            if _SCALARS.issuperset(types):
                key = (tuple(value.items()), types)
            elif nested:
                key = nested_key(value, types)
            if key is not None:
                found = by_raw.get(key)
                if found is not None:
                    return found
                if not known_keys(value):
                    key = None
        elif not isinstance(value, Mapping):
            raise TypeError(f"expected an object for {cls.__name__}, got {type(value).__name__}")
        record = inner(value, cls)
        kept = shared.get(record)
        if kept is None:
            kept = _keep(shared, record, record, _SHARED_LIMIT)
        if key is not None:
            _keep(by_raw, key, kept, _SHARED_LIMIT)
        return kept

    return structure_shared_record


def _job_factory(cls: Any, converter: cattrs.Converter) -> _Hook:
    """Structure a job strictly when it fits, else field by field.

    The strict path is cattrs' generated function. When it fails and ``id`` and
    ``status`` are usable, each other field is structured on its own; those that
    do not fit are left ``None`` and named in ``unparsed_fields``.
    """
    strict = make_dict_structure_fn(cls, converter, unparsed_fields=override(omit=True))
    attrs.resolve_types(cls)
    optional = [
        (field.name, converter.get_structure_hook(field.type), field.type)
        for field in attrs.fields(cls)
        if field.name not in ("id", "status", "unparsed_fields")
    ]

    def structure_job(value: object, _: object) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise TypeError(f"expected an object for a job, got {type(value).__name__}")
        if type(value) is dict:
            _share_values(value)
        try:
            return strict(value, cls)
        except STRUCTURE_ERRORS:
            if type(value.get("id")) is not str or not isinstance(value.get("status"), str):
                raise
        fields: dict[str, Any] = {}
        unparsed: list[str] = []
        for name, hook, field_type in optional:
            raw = value.get(name)
            if raw is None:
                continue
            try:
                fields[name] = hook(raw, field_type)
            except STRUCTURE_ERRORS:
                unparsed.append(name)
                _warn_once(name, raw)
        return cls(
            id=value["id"],
            status=_structure_status(value["status"], None),
            unparsed_fields=tuple(unparsed),
            **fields,
        )

    return structure_job


_warned: set[str] = set()


def _warn_once(name: str, raw: object) -> None:
    if name not in _warned:
        _warned.add(name)
        logger.warning(
            "a job's %r field came as %s, which does not fit its documented type; it is "
            "left None and named in job.unparsed_fields (logged once per field)",
            name,
            type(raw).__name__,
        )


# --- the converter ----------------------------------------------------------------------


def make_converter(*, detailed_validation: bool = True) -> cattrs.Converter:
    """Build a converter for the Together fine-tunes wire format.

    *detailed_validation* (the default) makes errors inside objects and lists
    :class:`cattrs.BaseValidationError` groups that say where each problem is;
    on job payloads it costs no measurable speed. Without it, the first problem
    is raised bare (``KeyError``, ``TypeError`` or ``ValueError``).
    """
    converter = cattrs.Converter(
        omit_if_default=True,  # every optional field defaults to None: leave Nones out
        forbid_extra_keys=False,
        detailed_validation=detailed_validation,
        unstruct_collection_overrides={Sequence: list},
    )

    for scalar in (str, int, float, bool):
        converter.register_structure_hook(scalar, _scalar_hook(scalar))
    converter.register_structure_hook_factory(_is_scalar_union, _scalar_union_factory)
    converter.register_structure_hook(JobStatus, _structure_status)
    converter.register_unstructure_hook(JobStatus, str)
    converter.register_structure_hook(datetime, _structure_timestamp)
    converter.register_unstructure_hook(datetime, format_timestamp)

    converter.register_structure_hook_factory(_is_array, _array_factory)
    converter.register_structure_hook_factory(attrs.has, _record_factory)
    converter.register_structure_hook_factory(lambda cls: cls is FineTuneJob, _job_factory)
    converter.register_structure_hook_factory(_is_optional, _optional_factory)
    return converter


_CONVERTER: Final = make_converter()
_structure_job: Final = _CONVERTER.get_structure_hook(FineTuneJob)
_structure_job_list: Final = _CONVERTER.get_structure_hook(list[FineTuneJob])
_structure_event_tuple: Final = _CONVERTER.get_structure_hook(tuple[FineTuneEvent, ...])
_structure_checkpoint_tuple: Final = _CONVERTER.get_structure_hook(tuple[FineTuneCheckpoint, ...])


def structure_job(data: object) -> FineTuneJob:
    """Build a job from a decoded JSON object (full or truncated job)."""
    job: FineTuneJob = _structure_job(data, FineTuneJob)
    return job


def brief_job(data: object) -> FineTuneJob:
    """A job still active as its id, status and ``updated_at`` only; any other in full.

    For an answer whose record is soon replaced (a cancel the batch goes on to
    watch): structuring every field of it would be wasted. What would make
    :func:`structure_job` fail (no usable id or status) fails here the same way.
    """
    if type(data) is dict:
        job_id, status = data.get("id"), data.get("status")
        if type(job_id) is str and isinstance(status, str):
            known = _STATUS_BY_VALUE.get(status)
            if known is not None and not known.is_terminal:
                stamp = data.get("updated_at")
                if stamp is None:
                    return FineTuneJob(id=job_id, status=known)
                try:
                    updated = _structure_timestamp(stamp, None)
                except (TypeError, ValueError):
                    return structure_job(data)  # the full path names what did not fit
                return FineTuneJob(id=job_id, status=known, updated_at=updated)
    return structure_job(data)


def structure_jobs(items: object) -> list[FineTuneJob]:
    """Build jobs from a decoded JSON array of job objects (the ``data`` of a list call)."""
    jobs: list[FineTuneJob] = _structure_job_list(items, list[FineTuneJob])
    return jobs


def structure_events(data: object) -> tuple[FineTuneEvent, ...]:
    """Build events from a decoded JSON array of event objects (the ``data`` of an events call)."""
    events: tuple[FineTuneEvent, ...] = _structure_event_tuple(data, tuple[FineTuneEvent, ...])
    return events


def structure_checkpoints(data: object) -> tuple[FineTuneCheckpoint, ...]:
    """Build checkpoints from a decoded JSON array (the ``data`` of a checkpoints call)."""
    checkpoints: tuple[FineTuneCheckpoint, ...] = _structure_checkpoint_tuple(
        data, tuple[FineTuneCheckpoint, ...]
    )
    return checkpoints


def describe_error(error: Exception) -> str:
    """One readable line for a structuring error, naming where in the JSON it is."""
    if isinstance(error, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(error))
    return str(error)


def unstructure(obj: object) -> Any:
    """Turn a record (or a list of records) into JSON-ready data, leaving ``None`` fields out."""
    return _CONVERTER.unstructure(obj)
