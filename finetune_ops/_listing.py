"""Reading the job list as it arrives, one top-level entry at a time.

``GET /fine-tunes`` answers with every job the account ever ran: 100,000 jobs
are about 90 MB of JSON. Holding that whole (its bytes, then its text, then
its objects) would cost several times its size, so the answer is read here as
its chunks come: the top-level object is walked by hand, each element of its
``data`` array is decoded on its own and dropped, and only the text of the
entry being read is kept. Only those elements are read as jobs: objects nested
inside an entry (its events, a field that mentions another job) never are.

Polling reads the same list again and again, and most entries do not change
between two reads. A :class:`ListMemo` keeps, for each entry of the last read,
the length and hash of its text with its id and status; an entry whose text is
the one the last read had at that place is not decoded again.
"""

from __future__ import annotations

import codecs
import json
import re
import time
from array import array
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from ._bodies import EmptyBody
from ._converter import STRUCTURE_ERRORS, describe_error, structure_job
from ._errors import InvalidResponseError
from ._records import FineTuneJob

__all__ = ["Changes", "ChangesScan", "JobsScan", "ListMemo", "ListScan", "TimedChanges"]

T = TypeVar("T")

_DECODER = json.JSONDecoder()
# The standard library's own string scanner (C-accelerated); typeshed does not list it.
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")
_BLANK = frozenset(" \t\n\r")
_OTHER_JSON = frozenset('["-0123456789tfnNI')  # how JSON (as Python reads it) not an object begins
_HEAD = 200  # bytes kept from the start of an answer, for an error's excerpt

#: What a list says of the watched jobs: the records (or errors) of those whose
#: status moved, every watched id it has an entry for, and how many entries it had.
Changes = tuple[dict[str, FineTuneJob | InvalidResponseError], set[str], int]
#: What a list answer cost to read: (changes, seconds spent reading it).
TimedChanges = tuple[Changes, float]


def _skip(text: str, pos: int) -> int:
    """Where the whitespace from ``pos`` ends."""
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


# Where the walk through the top-level object is.
_START, _KEY_OR_END, _KEY, _ITEM_OR_END, _ITEM, _AFTER_ITEM, _AFTER_VALUE, _TAIL = range(8)


class _MoreText(Exception):
    """The text so far ends inside the next token: wait for more."""


class _Enough(Exception):
    """The scan has read all the entries it was asked to read."""


class ListScan(Generic[T]):
    """Walks a list answer fed to it in chunks; :meth:`finish` gives what it made of it.

    Errors are those of ``json`` for text that is not JSON (also a body cut
    short), ``ValueError`` for JSON that is not an object with one ``data``
    array, ``UnicodeDecodeError``, :class:`EmptyBody`. They surface from
    :meth:`finish`, never from :meth:`feed`. Once the scan no longer
    ``wants_more`` (it has failed, or read all the entries it reads), the rest
    of the body need not be read.
    """

    def __init__(self) -> None:
        self.head = b""  # the answer's first bytes
        self.seconds = 0.0  # spent reading, network waits excluded
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""  # what is not read yet
        self._waiting: list[str] = []  # text that came while an unfinished token waits
        self._waiting_size = 0
        self._stuck = 0  # length of the text an unfinished token was tried on
        self._state = _START
        self._found = False  # the one 'data' array was seen
        self._spoken = False  # some text that is not whitespace came
        self._error: Exception | None = None
        self.wants_more = True

    @property
    def held(self) -> int:
        """Characters kept for the next entry (counted as bytes against the budget)."""
        return len(self._text) + self._waiting_size

    def feed(self, chunk: bytes) -> None:
        if not self.wants_more:
            return
        began = time.perf_counter()
        if len(self.head) < _HEAD:
            self.head += chunk[: _HEAD - len(self.head)]
        try:
            self._take(self._utf8.decode(chunk), end=False)
        except _Enough:
            self.wants_more = False
            self._text = ""
        except Exception as error:  # bad UTF-8, a shape that cannot be a list: final
            self._error = error
            self.wants_more = False
        self.seconds += time.perf_counter() - began

    def finish(self) -> T:
        began = time.perf_counter()
        try:
            if self._error is not None:
                raise self._error
            if self.wants_more:
                rest = self._utf8.decode(b"", final=True)
                if not self._spoken and (not rest or rest.isspace()):
                    raise EmptyBody
                try:
                    self._take(rest, end=True)
                except _Enough:
                    self.wants_more = False
            return self._result()
        finally:
            self.seconds += time.perf_counter() - began

    # -- what a kind of scan does with each entry, and in the end ---------------------

    def _entry(self, text: str, pos: int, end: bool) -> int:
        """Read the entry at ``pos``; its end. Raises _MoreText when it is not all here."""
        raise NotImplementedError

    def _result(self) -> T:
        raise NotImplementedError

    def _decode(self, text: str, pos: int, end: bool) -> tuple[Any, int]:
        try:
            value, after = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            if end:
                raise
            raise _MoreText from None
        if after == len(text) and not end:
            raise _MoreText  # a number cut short reads as a smaller one
        return value, after

    # -- the walk ---------------------------------------------------------------------

    def _take(self, text: str, *, end: bool) -> None:
        if text:
            if not self._spoken and not text.isspace():
                self._spoken = True
            self._waiting.append(text)
            self._waiting_size += len(text)
        # A token that did not fit is tried again once the text has doubled, so
        # one huge entry arriving in small chunks is not read over and over.
        if not end and self._stuck and self.held < 2 * self._stuck:
            return
        self._text += "".join(self._waiting)
        self._waiting.clear()
        self._waiting_size = 0
        self._text = self._text[self._walk(self._text, end) :]

    def _walk(self, text: str, end: bool) -> int:
        """Go as far into ``text`` as it allows; where it stopped."""
        size = len(text)
        pos = 0
        self._stuck = 0
        while True:
            at = _skip(text, pos)
            if at == size:
                if end and self._state != _TAIL:
                    raise json.JSONDecodeError("Expecting value", text, at)
                if end and not self._found:
                    raise ValueError("the answer has no 'data' list of jobs")
                return at
            try:
                if self._state == _ITEM or (self._state == _ITEM_OR_END and text[at] != "]"):
                    pos = self._items(text, at, end)
                else:
                    pos = self._step(text, at, end)
            except _MoreText:
                self._stuck = size - at
                return at

    def _step(self, text: str, at: int, end: bool) -> int:
        """One token (or one entry) from ``at``; where the next one starts."""
        char = text[at]
        state = self._state
        if state == _START:
            if char in _OTHER_JSON:
                raise ValueError("expected an object with a 'data' list of jobs")
            if char != "{":
                raise json.JSONDecodeError("Expecting a JSON object", text, at)
            self._state = _KEY_OR_END
            return at + 1
        if state in (_KEY_OR_END, _KEY):
            if char == "}" and state == _KEY_OR_END:
                self._state = _TAIL
                return at + 1
            return self._member(text, at, end)
        if state == _ITEM_OR_END:  # and the array is empty: see _items
            self._state = _AFTER_VALUE
            return at + 1
        if state == _AFTER_ITEM:
            if char not in ",]":
                raise json.JSONDecodeError("Expecting ',' or ']' in 'data'", text, at)
            self._state = _ITEM if char == "," else _AFTER_VALUE
            return at + 1
        if state == _AFTER_VALUE:
            if char not in ",}":
                raise json.JSONDecodeError("Expecting ',' or '}'", text, at)
            self._state = _KEY if char == "," else _TAIL
            return at + 1
        raise json.JSONDecodeError("Extra data", text, at)

    def _items(self, text: str, at: int, end: bool) -> int:
        """Entries of ``data`` one after another from ``at``, as far as the text goes.

        The walk's own loop would do the same a token at a time; this is its
        short way through the part of a list answer that is nearly all of it.
        """
        size = len(text)
        entry = self._entry
        progressed = False
        while True:
            try:
                after = entry(text, at, end)
            except _MoreText:
                if not progressed:
                    raise
                self._state = _ITEM
                return at
            progressed = True
            if after < size and text[after] == ",":
                at = after + 1
                if at < size and text[at] in _BLANK:
                    at = _skip(text, at)
                if at < size:
                    continue
                self._state = _ITEM
                return at
            self._state = _AFTER_ITEM
            return after

    def _member(self, text: str, at: int, end: bool) -> int:
        """A key of the top-level object and its value (or the opening of ``data``)."""
        if text[at] != '"':
            raise json.JSONDecodeError("Expecting property name in double quotes", text, at)
        try:
            key, pos = scanstring(text, at + 1)
        except json.JSONDecodeError:
            if end:
                raise
            raise _MoreText from None
        pos = _skip(text, pos)
        if pos == len(text) and not end:
            raise _MoreText
        if text[pos : pos + 1] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _skip(text, pos + 1)
        if pos == len(text) and not end:
            raise _MoreText
        if key != "data":
            after = self._decode(text, pos, end)[1]
            self._state = _AFTER_VALUE
            return after
        if self._found:
            raise ValueError("the answer has more than one 'data' key")
        if text[pos : pos + 1] != "[":
            raise ValueError("'data' is not a list of jobs")
        self._found = True
        self._state = _ITEM_OR_END
        return pos + 1


class JobsScan(ListScan[list[FineTuneJob]]):
    """Every entry of the list, structured as a job."""

    def __init__(self) -> None:
        super().__init__()
        self._jobs: list[FineTuneJob] = []

    def _entry(self, text: str, pos: int, end: bool) -> int:
        entry, after = self._decode(text, pos, end)
        self._jobs.append(structure_job(entry))
        return after

    def _result(self) -> list[FineTuneJob]:
        return self._jobs


class ListMemo:
    """Each entry of the last list read: the length and hash of its text, its id and status.

    Hashes are Python's own string hash, keyed anew in every process: two
    different texts of the same length agreeing on it by chance is a 1 in 2**64
    event, and the worst it could do is keep a job watched one more tick.
    """

    __slots__ = ("hashes", "ids", "lengths", "statuses")

    def __init__(self) -> None:
        self.lengths = array("q")
        self.hashes = array("q")
        self.ids: list[object] = []
        self.statuses: list[object] = []

    def __len__(self) -> int:
        return len(self.lengths)

    def adopt(self, other: ListMemo) -> None:
        """Hold what ``other`` holds from now on."""
        self.lengths, self.hashes, self.ids, self.statuses = (
            other.lengths,
            other.hashes,
            other.ids,
            other.statuses,
        )


class ChangesScan(ListScan[TimedChanges]):
    """What the list says of the watched jobs ``known`` (id to last status seen).

    Only entries of watched jobs whose status moved are structured; the rest
    are dropped as soon as their id and status are read, or, when ``memo``
    has the entry's text from the last read, without being decoded at all. The
    memo is replaced by what this read saw once it has read the whole answer.

    With ``most``, the scan stops wanting more after that many entries: what
    it read holds for those entries, and says nothing of the others.
    """

    def __init__(
        self,
        known: Mapping[str, str | None],
        memo: ListMemo | None = None,
        most: int | None = None,
    ) -> None:
        super().__init__()
        self._known = known
        self._memo = memo if memo is not None else ListMemo()
        self._most = most
        self._seen = ListMemo()
        self._next = 0  # where in the memo this read is expected to be
        self._statuses: dict[str, str] = {}  # one copy of each status text
        self._changed: dict[str, FineTuneJob | InvalidResponseError] = {}
        self._mentioned: set[str] = set()

    def _entry(self, text: str, pos: int, end: bool) -> int:
        if self._most is not None and len(self._seen) >= self._most:
            raise _Enough
        memo = self._memo
        lengths = memo.lengths
        size = len(text)
        here = self._next
        hashed, digest = -1, 0  # the one text hashed so far: where it ends, its hash
        # Where an entry was added or removed, the old ones are one place off.
        # Only objects: their text ends where they end, a number's may go on.
        for at in (here, here + 1, here - 1) if text[pos] == "{" else ():
            if not 0 <= at < len(lengths):
                continue
            after = pos + lengths[at]
            if after > size:
                if at == here and not end:
                    raise _MoreText  # perhaps the same entry, not all here yet
                continue
            if after != hashed:
                hashed, digest = after, hash(text[pos:after])
            if digest == memo.hashes[at]:
                self._next = at + 1
                self._note(memo.ids[at], memo.statuses[at], text, pos, after, digest, None)
                return after
        entry, after = self._decode(text, pos, end)
        self._next = here + 1
        job_id = status = None
        if type(entry) is dict:
            job_id, status = entry.get("id"), entry.get("status")
            if type(status) is str:
                status = self._statuses.setdefault(status, status)
        if after != hashed:
            digest = hash(text[pos:after])
        self._note(job_id, status, text, pos, after, digest, entry)
        return after

    def _note(
        self,
        job_id: object,
        status: object,
        text: str,
        pos: int,
        after: int,
        digest: int,
        entry: object,
    ) -> None:
        seen = self._seen
        seen.lengths.append(after - pos)
        seen.hashes.append(digest)
        seen.ids.append(job_id)
        seen.statuses.append(status)
        if type(job_id) is not str or job_id not in self._known:
            return
        self._mentioned.add(job_id)
        if status == self._known[job_id]:
            return
        if entry is None:  # known by its text only: decoded now that it matters
            entry = _DECODER.raw_decode(text, pos)[0]
        self._changed[job_id] = _structure(job_id, entry)

    def _result(self) -> TimedChanges:
        if self.wants_more:  # a whole list: the next read compares with this one
            self._memo.adopt(self._seen)
        return (self._changed, self._mentioned, len(self._seen)), self.seconds


def _structure(job_id: str, entry: object) -> FineTuneJob | InvalidResponseError:
    try:
        return structure_job(entry)
    except STRUCTURE_ERRORS as error:
        return InvalidResponseError(
            f"GET /fine-tunes: the entry for {job_id} is malformed: {describe_error(error)}",
            status_code=200,
            transient=False,
        )
