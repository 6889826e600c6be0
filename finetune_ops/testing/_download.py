"""The file `GET /finetune/download` sends: a small generated archive standing in for weights.

A gzip-compressed tar holding one `manifest.json` that names the job, the
base model, the checkpoint and the step. The same request always gets the
same bytes (no timestamps of the moment), so a test can compare downloads.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any


def archive(manifest: dict[str, Any]) -> bytes:
    """A .tar.gz with `manifest` as manifest.json, byte-for-byte repeatable."""
    data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(packed.getvalue(), mtime=0)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes a `Range: bytes=A-B` header asks for, or None for all.

    Only the single-range form is understood; anything else is served whole,
    as a server may. Raises ValueError for a range that starts past the end.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, _, last_text = header[len("bytes=") :].partition("-")
    try:
        if first_text:
            first = int(first_text)
            last = int(last_text) if last_text else size - 1
        else:
            first, last = max(0, size - int(last_text)), size - 1
    except ValueError:
        return None
    if first >= size or first < 0:
        raise ValueError("range not satisfiable")
    return first, min(last, size - 1)
