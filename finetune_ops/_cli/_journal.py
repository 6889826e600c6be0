"""``--journal PATH``: what a batch command has done, one small JSON line per fact.

The file is JSON lines. The first line says what the journal is for::

    {"journal": "finetune-ops", "version": 1, "command": "cancel",
     "base_url": "https://api.together.ai/v1", "created_at": "2026-12-02T06:00:00Z"}

(never the key). Every later line is one fact about one job, keyed by ``id``
and ``event``:

- ``{"id": "ft-…", "event": "accepted"}``: the API answered 2xx to the job's
  cancel. Written the moment the answer arrives, before the job has ended.
- ``{"id": "ft-…", "event": "result", "ok": true, "status": "cancelled",
  "cancel_sent": true, "error": null}``: the job's result in that run.
  ``status`` is the last status seen (or null); ``error`` is null or
  ``{"type": ..., "message": ..., "status_code": ...}`` (``status_code`` only
  for an HTTP answer); with ``--journal-records`` a ``"job"`` key adds the full
  last record.

Readers ignore keys they do not know, so later versions can add some. Each
line is written with one unbuffered write while the file is locked
(``fcntl.flock``) by the one run that may use it; a line cut short by a kill or
a full disk is removed when possible, and skipped on reading otherwise.

Resuming reads the file as a stream and keeps, per requested id, only what it
needs to decide (:class:`Known`): whether a cancel was accepted, and the status
of its last ok result. A job whose cancel was accepted is never sent a second
one; it is only waited for, when the command waits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from finetune_ops._records import JobStatus
from finetune_ops._results import CancelResult

from ._exit import ConfigError
from ._output import error_record

__all__ = ["FORMAT", "VERSION", "Journal", "JournalError", "Known", "Resume"]

FORMAT = "finetune-ops"
VERSION = 1
#: A header is short; a longer first line is not one (and is not read whole).
_MAX_HEADER = 64 * 1024
#: Unreadable line numbers listed in the warning before the rest are only counted.
_SHOWN_UNREADABLE = 10


class JournalError(Exception):
    """The journal could not be written; the batch stops and reports what completed."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"journal {str(path)!r}: cannot write: {reason}")


@attrs.frozen
class Known:
    """What a journal says of one job: its cancel was accepted; its last ok result's status."""

    accepted: bool = False
    #: Status of the last ok result, None when no run ended ok for this job.
    final: str | None = None

    @property
    def ended(self) -> bool:
        return self.final is not None and JobStatus(self.final).is_terminal


@attrs.frozen(kw_only=True)
class Resume:
    """How the journal splits a batch's ids: what to send, what only to wait for, what is done."""

    send: list[str]
    wait: list[str]
    done: dict[str, Known]
    #: Ids whose cancel an earlier run saw accepted.
    accepted: frozenset[str]


class Journal:
    """One journal file, locked for this run: its header checked, facts read and appended."""

    def __init__(self, path: Path, *, command: str, base_url: str, records: bool) -> None:
        self.path = path
        self.records = records
        self._command = command
        self._base_url = base_url
        self._fd: int | None = None
        self._size = 0
        #: Numbers of the lines that could not be read (the first few) and how many there were.
        self.unreadable: list[int] = []
        self.unreadable_count = 0

    # -- opening -----------------------------------------------------------------

    def open(self) -> Journal:
        """Lock the file (exit 2 if another run holds it), check or write its header."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise ConfigError(
                f"cannot open the journal {str(self.path)!r}: {error.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(
                    f"the journal {str(self.path)!r} is in use by another run; "
                    "wait for it to end, or use another --journal"
                ) from None
            raise ConfigError(
                f"cannot lock the journal {str(self.path)!r}: {error.strerror}"
            ) from None
        self._fd = fd
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        assert self._fd is not None
        self._size = os.fstat(self._fd).st_size
        if self._size == 0:
            self._write(_line(self._header()))
            return
        with self.path.open("rb") as file:
            first = file.readline(_MAX_HEADER)
            file.seek(-1, os.SEEK_END)
            ends_with_newline = file.read(1) == b"\n"
        self._check_header(first)
        if not ends_with_newline:
            # End the line a killed run left unfinished, so the next one stands alone.
            self._write(b"\n")

    def _header(self) -> dict[str, Any]:
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return {
            "journal": FORMAT,
            "version": VERSION,
            "command": self._command,
            "base_url": self._base_url,
            "created_at": now,
        }

    def _check_header(self, line: bytes) -> None:
        name = repr(str(self.path))
        header = _parse(line)
        if header is None or header.get("journal") != FORMAT:
            raise ConfigError(
                f"{name} is not a finetune-ops journal (its first line is not a journal "
                "header); refusing to append to it"
            )
        if header.get("version") != VERSION:
            raise ConfigError(
                f"the journal {name} has format version {header.get('version')!r}; "
                f"this finetune-ops reads version {VERSION}"
            )
        if header.get("command") != self._command:
            raise ConfigError(
                f"the journal {name} belongs to `{header.get('command')}`, not "
                f"`{self._command}`; use another --journal"
            )
        if header.get("base_url") != self._base_url:
            raise ConfigError(
                f"the journal {name} was written for {header.get('base_url')}, not "
                f"{self._base_url}; use another --journal"
            )

    # -- reading -----------------------------------------------------------------

    def known(self, ids: Collection[str]) -> dict[str, Known]:
        """What the journal says of each of ``ids`` that it mentions, read as a stream."""
        known: dict[str, Known] = {}
        shared: dict[Known, Known] = {}  # one object per distinct value, not one per job
        for number, fact in self._facts():
            if fact is None:
                self._unreadable(number)
                continue
            job_id = fact["id"]
            if job_id not in ids:
                continue
            before = known.get(job_id, _NOTHING)
            after = _apply(before, fact)
            if after is None:
                self._unreadable(number)
                continue
            known[job_id] = shared.setdefault(after, after)
        return known

    def _facts(self) -> Iterator[tuple[int, dict[str, Any] | None]]:
        with self.path.open("rb") as file:
            file.readline(_MAX_HEADER)  # the header, checked on opening
            for number, line in enumerate(file, start=2):
                if line.strip():
                    fact = _parse(line)
                    ok = fact is not None and isinstance(fact.get("id"), str)
                    yield number, fact if ok else None

    def _unreadable(self, number: int) -> None:
        self.unreadable_count += 1
        if len(self.unreadable) < _SHOWN_UNREADABLE:
            self.unreadable.append(number)

    def resume(self, ids: list[str], *, cancel: bool, wait: bool) -> Resume:
        """Split ``ids``: cancels to send, jobs only to wait for, and jobs already done."""
        known = self.known(set(ids))
        send: list[str] = []
        waits: list[str] = []
        done: dict[str, Known] = {}
        for job_id in ids:
            entry = known.get(job_id, _NOTHING)
            if entry.ended or (entry.final is not None and not wait):
                done[job_id] = entry
            elif cancel and entry.accepted:
                if wait:
                    waits.append(job_id)
                else:
                    done[job_id] = entry
            elif cancel:
                send.append(job_id)
            else:
                waits.append(job_id)
        accepted = frozenset(job_id for job_id, entry in known.items() if entry.accepted)
        return Resume(send=send, wait=waits, done=done, accepted=accepted)

    # -- writing -----------------------------------------------------------------

    def accepted(self, job_id: str) -> None:
        """Record that the API accepted the job's cancel."""
        self._write(_line({"id": job_id, "event": "accepted"}))

    def result(self, result: CancelResult, job: dict[str, Any] | None) -> None:
        """Record the job's result; ``job`` is its unstructured record, kept with ``records``."""
        fact = result_fact(result)
        if self.records:
            fact["job"] = job
        self._write(_line(fact))

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise RuntimeError("the journal is not open")
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as error:
            # Take back a partial line, so that every line in the file stays whole.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise JournalError(self.path, error) from None
        self._size += written

    def close(self) -> None:
        """Release the lock and close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as error:
                raise JournalError(self.path, error) from None


_NOTHING = Known()


def result_fact(result: CancelResult) -> dict[str, Any]:
    """A result line's fields, without the full job record."""
    return {
        "id": result.job_id,
        "event": "result",
        "ok": result.ok,
        "status": None if result.status is None else str(result.status),
        "cancel_sent": result.cancel_sent,
        "error": None if result.error is None else error_record(result.error),
    }


def _apply(before: Known, fact: dict[str, Any]) -> Known | None:
    """The job's entry after one fact, or None when the fact makes no sense."""
    event = fact.get("event")
    if event == "accepted":
        return attrs.evolve(before, accepted=True)
    if event == "result" and isinstance(fact.get("ok"), bool):
        accepted = before.accepted or fact.get("cancel_sent") is True
        status = fact.get("status")
        if fact["ok"] and isinstance(status, str):
            return Known(accepted=accepted, final=status)
        # A failure after an ok result (a later run timed out) does not undo what ended.
        return Known(accepted=accepted, final=before.final if not fact["ok"] else None)
    return None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
