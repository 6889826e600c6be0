"""Faster JSON from answer bytes, when the optional ``speedups`` extra is installed.

With msgspec a single body is parsed straight from its bytes, and the job list
is split into entries in C, only the entries of watched jobs being decoded past
their id and status. Without it the standard library does the work (``_api``
and ``_listing``): the results are the same. (Not orjson: it reads an integer
beyond 64 bits as a float, where ``json`` and msgspec keep it exact.)

A fast parser only ever succeeds for the caller: when it refuses a body, it
raises :class:`SlowPath` and the standard path reads the body again, so an
invalid answer gets the same error with or without the extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

#: Set (to anything but "" or "0") to measure or test without the extra while it is installed.
DISABLED = os.environ.get("FINETUNE_OPS_NO_SPEEDUPS", "") not in ("", "0")

try:
    import msgspec
except ImportError:  # the extra is not installed
    HAVE_MSGSPEC = False
else:
    HAVE_MSGSPEC = not DISABLED

__all__ = ["DISABLED", "LIST_READER", "SlowPath", "loads"]


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


class _ListReader:
    """Splits a list answer's ``data`` into raw entries and reads each one's id and status."""

    def __init__(self) -> None:
        self._page = msgspec.json.Decoder(_Page)
        self._seen = msgspec.json.Decoder(_Seen).decode
        self._errors = (msgspec.DecodeError, msgspec.ValidationError)
        self._not_an_object = msgspec.ValidationError

    def entries(self, payload: bytearray) -> list[Any]:
        """The raw entries of ``data``; SlowPath for anything but an object with such a list."""
        # msgspec would read the last of two "data" keys, which the standard path
        # refuses: a body that may have two (or says "data" elsewhere) goes there.
        if payload.count(b'"data"') != 1:
            raise SlowPath
        try:
            page = self._page.decode(payload)
        except self._errors:
            raise SlowPath from None
        entries: list[Any] = page.data
        return entries

    def id_status(self, raw: Any) -> tuple[object, object]:
        """An entry's id and status (``(None, None)`` for an entry that is not an object)."""
        try:
            seen = self._seen(raw)
        except self._not_an_object:
            return None, None
        return seen.id, seen.status

    def whole(self, raw: Any) -> object:
        """An entry decoded in full, as ``json.loads`` would."""
        assert loads is not None  # msgspec is there
        try:
            return loads(memoryview(raw))
        except SlowPath:  # a number out of range of a double, say
            return json.loads(bytes(raw))


if HAVE_MSGSPEC:

    class _Page(msgspec.Struct):
        data: list[msgspec.Raw]

    class _Seen(msgspec.Struct):
        id: Any = None
        status: Any = None


#: Parses a whole body from its bytes (raises SlowPath when it will not); None: no extra.
loads: Callable[[bytearray | memoryview], object] | None = _msgspec_loads()
#: Reads the job list from its bytes; None without msgspec.
LIST_READER: _ListReader | None = _ListReader() if HAVE_MSGSPEC else None
