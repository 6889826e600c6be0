"""The fine-tunes part of the public spec as the tests read it, with its defects worked around.

`tests/spec/fine-tunes.json` is made from the public spec by
scripts/compact_spec.py. Where the spec contradicts itself or the service, the
fix is made here, once, for every test that checks answers against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).parent / "spec/fine-tunes.json"


def _drop_type_beside_one_of(node: Any) -> None:
    # The spec puts `type: boolean` next to `oneOf: [boolean, "auto"]` (train_on_inputs),
    # which would reject its own default "auto"; the oneOf is what it means.
    if isinstance(node, dict):
        if "oneOf" in node and "type" in node:
            del node["type"]
        for value in node.values():
            _drop_type_beside_one_of(value)
    elif isinstance(node, list):
        for item in node:
            _drop_type_beside_one_of(item)


def load_spec() -> dict[str, Any]:
    """The compact spec, corrected where it contradicts itself or the service."""
    document: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    _drop_type_beside_one_of(document)
    schemas = document["components"]["schemas"]
    # Cosine scheduler arguments also match the linear ones (neither forbids extra keys),
    # so the spec's oneOf rejects every cosine scheduler; either branch is what it means.
    arguments = schemas["LRScheduler"]["properties"]["lr_scheduler_args"]
    arguments["anyOf"] = arguments.pop("oneOf")
    # The service sends user_error; the spec's enum omits it (see DESIGN.md).
    schemas["FinetuneJobStatus"]["enum"].append("user_error")
    return document
