"""Reading the job list one top-level entry at a time.

``GET /fine-tunes`` answers with every job the account ever ran: 100,000 jobs
are about 90 MB of JSON. Decoding that whole would hold every entry as Python
objects at once. Instead the top-level object is walked here by hand and each
element of its ``data`` array is decoded on its own, so at most one entry is
alive at a time. Only those elements are read as jobs: objects nested inside an
entry (its events, its checkpoints, a field that mentions another job) never are.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping

from ._converter import STRUCTURE_ERRORS, describe_error, structure_job
from ._errors import InvalidResponseError
from ._records import FineTuneJob
from ._speedups import LIST_READER, SlowPath

__all__ = [
    "Changes",
    "TimedChanges",
    "entries",
    "parse_changes",
    "parse_changes_from_bytes",
    "timed_parse_changes",
    "timed_parse_changes_from_bytes",
]

_DECODER = json.JSONDecoder()
# The standard library's own string scanner (C-accelerated); typeshed does not list it.
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")
_OTHER_JSON = frozenset('["-0123456789tfn')  # how JSON that is not an object begins

#: What a list says of the watched jobs: the records (or errors) of those whose
#: status moved, every watched id it has an entry for, and how many entries it had.
Changes = tuple[dict[str, FineTuneJob | InvalidResponseError], set[str], int]
#: What a list answer cost to read: (changes, seconds spent reading it).
TimedChanges = tuple[Changes, float]


def _skip(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _expect(text: str, pos: int, char: str, what: str) -> int:
    if text[pos : pos + 1] != char:
        raise json.JSONDecodeError(f"Expecting {what}", text, pos)
    return _skip(text, pos + 1)


def entries(text: str) -> Iterator[object]:
    """Yield each element of the top-level ``data`` array of a list answer.

    Raises ``json.JSONDecodeError`` for text that is not JSON (also after the
    last entry: a body cut short fails as a whole), and ``ValueError`` for JSON
    that is not an object with one ``data`` array.
    """
    pos = _skip(text, 0)
    if text[pos : pos + 1] in _OTHER_JSON:
        raise ValueError("expected an object with a 'data' list of jobs")
    pos = _expect(text, pos, "{", "a JSON object")
    found = False
    closed = text[pos : pos + 1] == "}"
    while not closed:
        if text[pos : pos + 1] != '"':
            raise json.JSONDecodeError("Expecting property name in double quotes", text, pos)
        key, pos = scanstring(text, pos + 1)
        pos = _expect(text, _skip(text, pos), ":", "':' delimiter")
        if key != "data":
            pos = _DECODER.raw_decode(text, pos)[1]
        elif found:
            raise ValueError("the answer has more than one 'data' key")
        elif text[pos : pos + 1] != "[":
            raise ValueError("'data' is not a list of jobs")
        else:
            found = True
            pos = _skip(text, pos + 1)
            done = text[pos : pos + 1] == "]"
            while not done:
                entry, pos = _DECODER.raw_decode(text, pos)
                yield entry
                pos = _skip(text, pos)
                done = text[pos : pos + 1] == "]"
                if not done:
                    pos = _expect(text, pos, ",", "',' or ']' in 'data'")
            pos += 1
        pos = _skip(text, pos)
        closed = text[pos : pos + 1] == "}"
        if not closed:
            pos = _expect(text, pos, ",", "',' or '}'")
    if _skip(text, pos + 1) != len(text):
        raise json.JSONDecodeError("Extra data", text, pos + 1)
    if not found:
        raise ValueError("the answer has no 'data' list of jobs")


def parse_changes(text: str, known: Mapping[str, str | None]) -> Changes:
    """Read a list answer for the watched jobs ``known`` (id to last status seen).

    Only entries of watched jobs whose status moved are structured; the rest
    are dropped as soon as their id is read.
    """
    changed: dict[str, FineTuneJob | InvalidResponseError] = {}
    mentioned: set[str] = set()
    size = 0
    for entry in entries(text):
        size += 1
        if type(entry) is not dict:
            continue
        job_id = entry.get("id")
        if type(job_id) is not str or job_id not in known:
            continue
        mentioned.add(job_id)
        if entry.get("status") == known[job_id]:
            continue
        changed[job_id] = _structure(job_id, entry)
    return changed, mentioned, size


def parse_changes_from_bytes(payload: bytearray, known: Mapping[str, str | None]) -> Changes:
    """:func:`parse_changes` from the answer's bytes, with msgspec (the ``speedups`` extra).

    No text copy of the body is made, and entries of jobs not watched are
    never decoded past their id and status. Raises SlowPath without msgspec,
    or for a body it will not read (the standard path then says why).
    """
    reader = LIST_READER
    if reader is None:
        raise SlowPath
    changed: dict[str, FineTuneJob | InvalidResponseError] = {}
    mentioned: set[str] = set()
    raws = reader.entries(payload)
    id_status = reader.id_status
    for raw in raws:
        job_id, status = id_status(raw)
        if type(job_id) is not str or job_id not in known:
            continue
        mentioned.add(job_id)
        if status == known[job_id]:
            continue
        changed[job_id] = _structure(job_id, reader.whole(raw))
    return changed, mentioned, len(raws)


def _structure(job_id: str, entry: object) -> FineTuneJob | InvalidResponseError:
    try:
        return structure_job(entry)
    except STRUCTURE_ERRORS as error:
        return InvalidResponseError(
            f"GET /fine-tunes: the entry for {job_id} is malformed: {describe_error(error)}",
            status_code=200,
            transient=False,
        )


def timed_parse_changes(text: str, known: Mapping[str, str | None]) -> TimedChanges:
    """:func:`parse_changes`, and the seconds it took: what a polling round costs."""
    began = time.perf_counter()
    changes = parse_changes(text, known)
    return changes, time.perf_counter() - began


def timed_parse_changes_from_bytes(
    payload: bytearray, known: Mapping[str, str | None]
) -> TimedChanges:
    """:func:`parse_changes_from_bytes`, and the seconds it took."""
    began = time.perf_counter()
    changes = parse_changes_from_bytes(payload, known)
    return changes, time.perf_counter() - began
