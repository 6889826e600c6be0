"""Answers about the simulated account rather than one job: who am I, what would it cost.

`whoami` answers `GET /v3/whoami` (the newer official CLI asks it before
anything else) as for a project API key. `estimate` answers
`POST /fine-tunes/estimate-price`: the same training file always gets the same
token count, and the price is in US dollars (unlike a job's `total_price`,
which is in nanodollars).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any, Final

from ._models import MODELS, find_model

__all__ = ["DEFAULT_PROJECT", "DOWNLOAD_CHECKPOINTS", "estimate", "whoami"]

#: The project of every caller when the simulator accepts any key.
DEFAULT_PROJECT: Final = "sim-project"
#: The `checkpoint` values `GET /finetune/download` takes.
DOWNLOAD_CHECKPOINTS: Final = ("merged", "adapter", "model_output_path")
#: The simulated account's credit limit, in US dollars.
USER_LIMIT: Final = 1000.0


def _slug(name: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in name.lower()).strip("-") or "p"


def whoami(project: str | None) -> dict[str, Any]:
    """The caller as the API describes a project API key."""
    name = DEFAULT_PROJECT if project is None else project
    slug = _slug(name)
    return {
        "type": "project_api_key",
        "api_key": {"id": f"key-{slug}"},
        "organization": {"id": "org-sim", "name": "Simulated organization"},
        "project": {"id": f"proj-{slug}", "name": name, "slug": slug},
    }


def estimate(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The price estimate for a would-be job (checked fields): tokens, and dollars."""
    training_file = str(fields["training_file"])
    tokens = 500_000 + zlib.crc32(training_file.encode()) % 20_000_000
    base = find_model(str(fields.get("model", ""))) or MODELS[0]
    train_tokens = tokens * int(fields.get("n_epochs", 1))
    evals = int(fields.get("n_evals", 0)) if fields.get("validation_file") else 0
    eval_tokens = tokens // 10 * evals
    price = math.ceil(
        (train_tokens + eval_tokens) / 1_000_000 * base.price_per_million_tokens * 100
    )
    dollars = price / 100
    return {
        "estimation_available": True,
        "estimated_total_price": dollars,
        "allowed_to_proceed": dollars <= USER_LIMIT,
        "user_limit": USER_LIMIT,
        "estimated_train_token_count": train_tokens,
        "estimated_eval_token_count": eval_tokens,
    }
