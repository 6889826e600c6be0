"""The documentation site covers the public API: every exported name has a reference entry."""

from __future__ import annotations

import re
from pathlib import Path

import finetune_ops
import finetune_ops.testing

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"


def _documented() -> set[str]:
    text = "\n".join(page.read_text() for page in REFERENCE.glob("*.md"))
    return set(re.findall(r"^::: ([\w.]+)$", text, flags=re.MULTILINE))


def test_every_public_name_has_a_reference_entry() -> None:
    """A name added to finetune_ops or finetune_ops.testing needs a ``:::`` entry in the docs."""
    public = {f"finetune_ops.{name}" for name in finetune_ops.__all__ if name != "__version__"}
    public |= {f"finetune_ops.testing.{name}" for name in finetune_ops.testing.__all__}
    assert sorted(public - _documented()) == []
