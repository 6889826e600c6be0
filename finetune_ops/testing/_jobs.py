"""What a simulated job is made of: its fixed settings, its moving state, its event texts.

A job's settings (model, hyperparameters, training type, ...) never change, so
they live in a `Template` that also holds their JSON text, rendered once.
Preloaded jobs share a small pool of templates, which keeps 100,000 jobs cheap
to create and to list.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any, Final

from ._models import MODELS, BaseModel

#: Keys of the truncated job (list, create, cancel) that a template provides.
TRUNCATED_KEYS: Final = frozenset(
    {
        "user_id",
        "total_price",
        "token_count",
        "training_file",
        "validation_file",
        "packing",
        "max_seq_length",
        "model",
        "suffix",
        "n_epochs",
        "n_evals",
        "n_checkpoints",
        "batch_size",
        "training_type",
        "training_method",
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "max_grad_norm",
        "weight_decay",
        "random_seed",
        "wandb_project_name",
        "wandb_name",
        "from_checkpoint",
        "from_hf_model",
        "hf_model_revision",
    }
)
#: Keys of a create request that only the full job (retrieve) shows.
FULL_ONLY_KEYS: Final = frozenset({"multimodal_params"})
#: Keys the simulator computes from a job's state; they cannot be preset.
STATE_KEYS: Final = frozenset(
    {
        "id",
        "job_id",
        "status",
        "created_at",
        "updated_at",
        "started_at",
        "events",
        "progress",
        "epochs_completed",
        "queue_depth",
        "model_output_name",
        "adapter_output_name",
        "model_output_path",
    }
)

_SUFFIXES: Final = ("support-bot", "sql-helper", "sweep-a", "sweep-b", "summarizer", "eval-run")
_PROJECTS: Final = ("", "", "ft-sweeps", "assistants")
_LORA_MODULES: Final = ("all-linear", "q_proj,k_proj,v_proj,o_proj")
_OWNER: Final = "sim-user"
_TOKENS_PER_STEP: Final = 65_536


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# The version (4) and variant (RFC 4122) bits of a random UUID, as uuid.UUID sets them.
_UUID_KEEP: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET: Final = (0x4000 << 64) | (0x8000 << 48)


def random_uuid(rng: random.Random) -> str:
    """A version 4 UUID string drawn from `rng`, so seeded runs repeat their ids."""
    # Formatting by hand: uuid.UUID costs more than the rest of creating a job.
    text = f"{(rng.getrandbits(128) & _UUID_KEEP) | _UUID_SET:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class Template:
    """A job's fixed settings, as truncated-view fields plus full-view-only fields."""

    __slots__ = (
        "full_extra",
        "model",
        "n_epochs",
        "param_count",
        "suffix",
        "token_count",
        "total_steps",
        "truncated",
        "truncated_json",
        "wandb_url",
    )

    def __init__(self, truncated: dict[str, Any], full_extra: dict[str, Any]) -> None:
        self.truncated = truncated
        self.full_extra = full_extra
        # The object's members without the braces, ready to splice after the state keys.
        self.truncated_json = _compact(truncated)[1:-1]
        self.model = str(truncated.get("model", ""))
        self.suffix = str(truncated.get("suffix", ""))
        self.n_epochs = max(1, _int(truncated.get("n_epochs"), 1))
        self.token_count = _int(truncated.get("token_count"), 0)
        self.param_count = _int(full_extra.get("param_count"), 0)
        self.total_steps = max(1, math.ceil(self.token_count * self.n_epochs / _TOKENS_PER_STEP))
        self.wandb_url = str(full_extra.get("wandb_url", ""))

    def with_overrides(self, fields: Mapping[str, Any]) -> Template:
        """A copy with some fields replaced (full-view-only keys go to the full view)."""
        bad = STATE_KEYS.intersection(fields)
        if bad:
            raise ValueError(
                f"fields {sorted(bad)} follow from the job's state; set status instead"
            )
        truncated = dict(self.truncated)
        full_extra = dict(self.full_extra)
        for key, value in fields.items():
            (truncated if key in TRUNCATED_KEYS else full_extra)[key] = value
        return Template(truncated, full_extra)

    def adapter_name(self, job_id: str) -> str | None:
        """The name of a LoRA job's standalone adapter (None for full training).

        Not in the public spec, but SDK 3.x requires the key (null allowed) in
        a created job when it validates strictly.
        """
        training_type = self.truncated.get("training_type")
        if isinstance(training_type, dict) and training_type.get("type") == "Lora":
            return f"{self.output_name(job_id)}-adapter"
        return None

    def output_name(self, job_id: str) -> str:
        """The name the fine-tuned model gets, like the service's owner/model-suffix-id."""
        base = self.model.rsplit("/", 1)[-1]
        suffix = f"-{self.suffix}" if self.suffix else ""
        return f"{_OWNER}/{base}{suffix}-{job_id[3:11]}"


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def make_template(rng: random.Random) -> Template:
    """Settings drawn from `rng`, for preloaded jobs."""
    base = rng.choice(MODELS)
    model, param_count = base.name, base.param_count
    n_epochs = rng.choice((1, 2, 3, 4))
    token_count = rng.randrange(500_000, 40_000_000)
    lora = rng.random() < 0.6
    dpo = rng.random() < 0.25
    scheduler = rng.choice(("linear", "cosine"))
    project = rng.choice(_PROJECTS)

    training_type: dict[str, Any]
    if lora:
        rank = rng.choice((8, 16, 32, 64))
        training_type = {
            "type": "Lora",
            "lora_r": rank,
            "lora_alpha": rank * 2,
            "lora_dropout": rng.choice((0.0, 0.05)),
            "lora_trainable_modules": rng.choice(_LORA_MODULES),
        }
    else:
        training_type = {"type": "Full"}
    training_method: dict[str, Any]
    if dpo:
        training_method = {
            "method": "dpo",
            "dpo_beta": rng.choice((0.1, 0.2)),
            "rpo_alpha": 0.0,
            "dpo_normalize_logratios_by_length": False,
            "dpo_reference_free": False,
            "simpo_gamma": 0.0,
        }
    else:
        training_method = {"method": "sft", "train_on_inputs": "auto"}
    scheduler_args: dict[str, Any] = {"min_lr_ratio": 0.0}
    if scheduler == "cosine":
        scheduler_args["num_cycles"] = 0.5

    truncated: dict[str, Any] = {
        "user_id": "user-" + random_uuid(rng).replace("-", "")[:16],
        "training_file": "file-" + random_uuid(rng),
        "model": model,
        "suffix": rng.choice(_SUFFIXES),
        "packing": True,
        "max_seq_length": rng.choice((2048, 4096, 8192)),
        "n_epochs": n_epochs,
        "n_evals": rng.choice((0, 0, 2)),
        "n_checkpoints": rng.choice((1, n_epochs)),
        "batch_size": rng.choice((8, 16, 32)),
        "learning_rate": rng.choice((1e-5, 2e-5, 5e-5, 1e-4)),
        "lr_scheduler": {"lr_scheduler_type": scheduler, "lr_scheduler_args": scheduler_args},
        "warmup_ratio": rng.choice((0.0, 0.03, 0.1)),
        "max_grad_norm": 1.0,
        "weight_decay": rng.choice((0.0, 0.01)),
        "random_seed": rng.choice((None, 42, rng.randrange(1, 10_000))),
        "training_type": training_type,
        "training_method": training_method,
        "token_count": token_count,
    }
    if project:
        truncated["wandb_project_name"] = project
    full_extra: dict[str, Any] = {
        "trainingfile_numlines": token_count // rng.randrange(300, 1200),
        "trainingfile_size": token_count * 4,
        "param_count": param_count,
        "train_on_inputs": "auto",
        "eval_steps": 0,
    }
    if project:
        full_extra["wandb_url"] = f"https://wandb.ai/{_OWNER}/{project}"
    if truncated.get("n_evals"):
        truncated.setdefault("validation_file", "file-" + random_uuid(rng))
    truncated["total_price"] = price(truncated, base)
    return Template(truncated, full_extra)


def created_template(rng: random.Random, settings: Mapping[str, Any], base: BaseModel) -> Template:
    """The template of a job made by a create request whose `settings` are complete.

    Only what the service learns from the training file itself (its token and
    line counts) is drawn from `rng`; every setting is the request's.
    """
    token_count = rng.randrange(500_000, 40_000_000)
    truncated: dict[str, Any] = {
        "user_id": "user-" + random_uuid(rng).replace("-", "")[:16],
        **{key: value for key, value in settings.items() if key in TRUNCATED_KEYS},
        "token_count": token_count,
    }
    truncated["total_price"] = price(truncated, base)
    method = settings.get("training_method", {})
    full_extra: dict[str, Any] = {
        "trainingfile_numlines": token_count // rng.randrange(300, 1200),
        "trainingfile_size": token_count * 4,
        "param_count": base.param_count,
        "train_on_inputs": method.get("train_on_inputs", "auto"),
        "eval_steps": 0,
        **{key: value for key, value in settings.items() if key in FULL_ONLY_KEYS},
    }
    project = settings.get("wandb_project_name")
    if project:
        full_extra["wandb_url"] = f"https://wandb.ai/{_OWNER}/{project}"
    return Template(truncated, full_extra)


#: `total_price` is in nanodollars (1e-9 USD), the unit the official SDKs read it in.
NANODOLLARS_PER_DOLLAR: Final = 1_000_000_000


def price(fields: Mapping[str, Any], base: BaseModel) -> int:
    """Tokens x epochs x the model's rate, in whole nanodollars."""
    tokens = _int(fields.get("token_count"), 0) * max(1, _int(fields.get("n_epochs"), 1))
    dollars = tokens / 1_000_000 * base.price_per_million_tokens
    return math.ceil(dollars * NANODOLLARS_PER_DOLLAR)


#: How the event types of the spec are named in the older style that SDK 1.x
#: validates against (upper case, and one word order of its own).
LEGACY_EVENT_TYPES: Final[Mapping[str, str]] = {
    "job_pending": "JOB_PENDING",
    "job_start": "JOB_START",
    "job_stopped": "JOB_STOPPED",
    "training_start": "TRAINING_START",
    "epoch_complete": "EPOCH_COMPLETE",
    "training_complete": "TRAINING_COMPLETE",
    "model_compressing": "COMPRESSING_MODEL",
    "model_compression_complete": "MODEL_COMPRESSION_COMPLETE",
    "model_uploading": "MODEL_UPLOADING",
    "model_upload_complete": "MODEL_UPLOAD_COMPLETE",
    "job_complete": "JOB_COMPLETE",
    "job_error": "JOB_ERROR",
    "cancel_requested": "CANCEL_REQUESTED",
}

# What a job says when it enters a status: (event type, level, message) in order.
ENTRY_EVENTS: Final[Mapping[str, tuple[tuple[str, str, str], ...]]] = {
    "pending": (("job_pending", "info", "Fine-tuning job created and waiting to be scheduled"),),
    "queued": (("job_pending", "info", "Job is queued for a free training slot"),),
    "running": (
        ("job_start", "info", "Job started"),
        ("training_start", "info", "Training started"),
    ),
    "compressing": (
        ("training_complete", "info", "Training finished"),
        ("model_compressing", "info", "Compressing the trained weights"),
    ),
    "uploading": (
        ("model_compression_complete", "info", "Weights compressed"),
        ("model_uploading", "info", "Uploading the fine-tuned model"),
    ),
    "completed": (
        ("model_upload_complete", "info", "Model uploaded"),
        ("job_complete", "info", "Job finished; the model is ready"),
    ),
    "cancel_requested": (("cancel_requested", "info", "Cancellation requested"),),
    "cancelled": (("job_stopped", "info", "Job stopped after a cancellation request"),),
    "error": (("job_error", "error", "Job failed with an internal error; no charge was made"),),
    "user_error": (("job_error", "error", "Job failed: the training file could not be parsed"),),
}
