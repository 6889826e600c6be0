"""A create request, checked and completed the way the service does it.

The request's settings are kept as sent. What it leaves out takes the spec's
documented default: packing on, one epoch, one checkpoint, no evaluations,
learning rate 1e-5, no warmup, gradient clipping at 1.0, no weight decay, SFT
with `train_on_inputs: "auto"`, LoRA when no training type is given, and the
spec's "none" schedule (written as a linear one that keeps the rate: its
`min_lr_ratio` is 1). The rest follows from the model's limits:
`batch_size: "max"` (the default) becomes the largest batch the model allows
for the training type and method, and the sequence length defaults to the
longest the model takes. A seed left out stays null, as the spec says the
service records it.

Refused with a 400 (`RequestError`): a body that is not an object, a missing
`model` or `training_file`, a model that is not supported, a value of the
wrong type or outside the model's limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from ._models import MODELS, BaseModel, find_model

__all__ = ["RequestError", "parse_create", "parse_estimate"]

_STRINGS: Final = (
    "validation_file",
    "suffix",
    "wandb_project_name",
    "wandb_name",
    "from_checkpoint",
    "from_hf_model",
    "hf_model_revision",
)
# (key, default, minimum) of the integer settings.
_INTEGERS: Final = (("n_epochs", 1, 1), ("n_checkpoints", 1, 1), ("n_evals", 0, 0))
# (key, default) of the non-negative number settings.
_NUMBERS: Final = (
    ("learning_rate", 1e-5),
    ("warmup_ratio", 0.0),
    ("max_grad_norm", 1.0),
    ("weight_decay", 0.0),
)
_DPO_DEFAULTS: Final = {
    "dpo_beta": 0.1,
    "rpo_alpha": 0.0,
    "dpo_normalize_logratios_by_length": False,
    "dpo_reference_free": False,
    "simpo_gamma": 0.0,
}
_MIN_SEQ_LENGTH: Final = 512


class RequestError(ValueError):
    """A create request the simulated API refuses with a 400."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _required(body: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    for key in keys:
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise RequestError(f"'{key}' is required and must be a non-empty string.", key)
    return body


def _supported(name: str) -> BaseModel:
    base = find_model(name)
    if base is None:
        raise RequestError(
            f"Model {name!r} is not supported for fine-tuning; "
            "GET /fine-tunes/models/supported lists the models that are.",
            "model",
            "model_not_supported",
        )
    return base


def _common(body: Mapping[str, Any], settings: dict[str, Any]) -> None:
    """The string and whole-number settings a create and an estimate share."""
    for key in _STRINGS:
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise RequestError(f"'{key}' must be a string.", key)
            settings[key] = body[key]
    for key, default, minimum in _INTEGERS:
        value = body.get(key)
        if value is None:
            value = default
        elif not _is_int(value) or value < minimum:
            raise RequestError(f"'{key}' must be an integer >= {minimum}.", key)
        settings[key] = value


def parse_estimate(body: Any) -> dict[str, Any]:
    """The checked fields of an estimate-price request (only the file is required)."""
    body = _required(body, ("training_file",))
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("'model' must be a string.", "model")
    # The SDKs send an empty model when they start from a checkpoint.
    base = _supported(model) if model else None
    fields: dict[str, Any] = {"training_file": body["training_file"]}
    _common(body, fields)
    if base is not None:
        fields["model"] = base.name
    # Without a model (a job started from a checkpoint) the first model's limits apply.
    fields["training_type"] = _training_type(body.get("training_type"), base or MODELS[0])
    fields["training_method"] = _training_method(body)
    return fields


def parse_create(body: Any) -> tuple[dict[str, Any], BaseModel]:
    """The job's complete settings from a create request body, and its base model."""
    body = _required(body, ("model", "training_file"))
    base = _supported(body["model"])
    settings: dict[str, Any] = {"model": base.name, "training_file": body["training_file"]}
    _common(body, settings)
    for key, number in _NUMBERS:
        given = body.get(key)
        if given is not None and (not _is_number(given) or given < 0):
            raise RequestError(f"'{key}' must be a non-negative number.", key)
        settings[key] = number if given is None else given
    packing = body.get("packing", True)
    if not isinstance(packing, bool):
        raise RequestError("'packing' must be true or false.", "packing")
    settings["packing"] = packing
    seed = body.get("random_seed")
    if seed is not None and not _is_int(seed):
        raise RequestError("'random_seed' must be an integer or null.", "random_seed")
    settings["random_seed"] = seed
    settings["lr_scheduler"] = _scheduler(body.get("lr_scheduler"))
    settings["training_type"] = _training_type(body.get("training_type"), base)
    settings["training_method"] = _training_method(body)
    method = settings["training_method"]["method"]
    settings["max_seq_length"] = _seq_length(body.get("max_seq_length"), base, method)
    settings["batch_size"] = _batch_size(body.get("batch_size"), base, settings)
    multimodal = body.get("multimodal_params")
    if multimodal is not None:
        if not isinstance(multimodal, dict):
            raise RequestError("'multimodal_params' must be an object.", "multimodal_params")
        settings["multimodal_params"] = dict(multimodal)
    if settings["n_evals"] and "validation_file" not in settings:
        raise RequestError("'n_evals' needs a 'validation_file'.", "validation_file")
    return settings, base


def _scheduler(value: Any) -> dict[str, Any]:
    if value is None:
        # The spec's default is "none": a linear schedule that ends where it starts.
        return {"lr_scheduler_type": "linear", "lr_scheduler_args": {"min_lr_ratio": 1.0}}
    kind = value.get("lr_scheduler_type") if isinstance(value, dict) else None
    if kind not in ("linear", "cosine"):
        raise RequestError(
            "'lr_scheduler.lr_scheduler_type' must be 'linear' or 'cosine'.", "lr_scheduler"
        )
    given = value.get("lr_scheduler_args") or {}
    if not isinstance(given, dict):
        raise RequestError("'lr_scheduler.lr_scheduler_args' must be an object.", "lr_scheduler")
    arguments: dict[str, Any] = {"min_lr_ratio": given.get("min_lr_ratio", 0.0)}
    if kind == "cosine":
        arguments["num_cycles"] = given.get("num_cycles", 0.5)
    if not all(_is_number(number) and number >= 0 for number in arguments.values()):
        raise RequestError("Scheduler arguments must be non-negative numbers.", "lr_scheduler")
    return {"lr_scheduler_type": kind, "lr_scheduler_args": arguments}


def _training_type(value: Any, base: BaseModel) -> dict[str, Any]:
    if value is None:
        value = {"type": "Lora"}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "Full":
        if base.full_max_batch is None:
            raise RequestError(f"Full training is not supported for {base.name}.", "training_type")
        return {"type": "Full"}
    if kind != "Lora":
        raise RequestError("'training_type.type' must be 'Full' or 'Lora'.", "training_type")
    rank = value.get("lora_r", min(16, base.max_rank))
    alpha = value.get("lora_alpha", rank * 2 if _is_int(rank) else None)
    if not (_is_int(rank) and _is_number(alpha) and 0 < rank <= base.max_rank and alpha > 0):
        raise RequestError(
            f"'lora_r' must be an integer from 1 to {base.max_rank} and 'lora_alpha' positive.",
            "lora_r",
        )
    dropout = value.get("lora_dropout", 0.0)
    if not _is_number(dropout) or not 0 <= dropout < 1:
        raise RequestError("'lora_dropout' must be in [0, 1).", "lora_dropout")
    modules = value.get("lora_trainable_modules", "all-linear")
    if not isinstance(modules, str) or not modules:
        raise RequestError("'lora_trainable_modules' must be a string.", "lora_trainable_modules")
    return {
        "type": "Lora",
        "lora_r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "lora_trainable_modules": modules,
    }


def _training_method(body: Mapping[str, Any]) -> dict[str, Any]:
    method = body.get("training_method")
    if method is None:
        method = {"method": "sft"}
    if not isinstance(method, dict) or method.get("method") not in ("sft", "dpo"):
        raise RequestError("'training_method.method' must be 'sft' or 'dpo'.", "training_method")
    chosen = dict(method)
    if chosen["method"] == "dpo":
        chosen = {**_DPO_DEFAULTS, **chosen}
        for key, default in _DPO_DEFAULTS.items():
            value = chosen[key]
            if value is None:
                chosen[key] = default
            elif isinstance(default, bool) != isinstance(value, bool) or not (
                isinstance(value, bool) or _is_number(value)
            ):
                kind = "true or false" if isinstance(default, bool) else "a number"
                raise RequestError(f"'{key}' must be {kind}.", key)
        return chosen
    # The top-level train_on_inputs is deprecated; the method's own takes precedence.
    inputs = chosen.get("train_on_inputs", body.get("train_on_inputs"))
    if inputs is None:
        inputs = "auto"
    if inputs != "auto" and not isinstance(inputs, bool):
        raise RequestError("'train_on_inputs' must be true, false or 'auto'.", "train_on_inputs")
    chosen["train_on_inputs"] = inputs
    return chosen


def _seq_length(value: Any, base: BaseModel, method: str) -> int:
    longest = base.max_seq_length_for(method)
    if value is None:
        return longest
    if not _is_int(value) or not _MIN_SEQ_LENGTH <= value <= longest:
        raise RequestError(
            f"'max_seq_length' must be an integer from {_MIN_SEQ_LENGTH} to {longest} "
            f"for {base.name} ({method}).",
            "max_seq_length",
        )
    result: int = value
    return result


def _batch_size(value: Any, base: BaseModel, settings: Mapping[str, Any]) -> int:
    largest = base.max_batch_size(settings["training_type"], settings["training_method"]["method"])
    if value is None or value == "max":
        return largest
    if not _is_int(value) or not 1 <= value <= largest:
        raise RequestError(
            f"'batch_size' must be 'max' or an integer from 1 to {largest} for this job.",
            "batch_size",
        )
    result: int = value
    return result
