"""Faster JSON from answer bytes, when the optional ``speedups`` extra is installed.

With msgspec a single body (a cancel answer, one job) is parsed straight from
its bytes. Without it the standard library does the work (``_api``): the
results are the same. The job list is read as it arrives, by ``_listing``,
either way. (Not orjson: it reads an integer beyond 64 bits as a float, where
``json`` and msgspec keep it exact.)

A fast parser only ever succeeds for the caller: when it refuses a body, it
raises :class:`SlowPath` and the standard path reads the body again, so an
invalid answer gets the same error with or without the extra.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: Set (to anything but "" or "0") to measure or test without the extra while it is installed.
DISABLED = os.environ.get("FINETUNE_OPS_NO_SPEEDUPS", "") not in ("", "0")

try:
    import msgspec
except ImportError:  # the extra is not installed
    HAVE_MSGSPEC = False
else:
    HAVE_MSGSPEC = not DISABLED

__all__ = ["DISABLED", "SlowPath", "loads"]


class SlowPath(Exception):
    """The fast parser would not read this body: the standard path decides what it is."""


def _msgspec_loads() -> Callable[[bytearray | memoryview], object] | None:
    if not HAVE_MSGSPEC:
        return None
    parse = msgspec.json.decode
    refused = (msgspec.DecodeError, msgspec.ValidationError)  # the latter: out of range

    def loads(payload: bytearray | memoryview) -> object:
        try:
            return parse(payload)
        except refused:
            raise SlowPath from None

    return loads


#: Parses a whole body from its bytes (raises SlowPath when it will not); None: no extra.
loads: Callable[[bytearray | memoryview], object] | None = _msgspec_loads()
