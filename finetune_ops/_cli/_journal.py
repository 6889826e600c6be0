"""``--journal PATH``: a batch's state (:class:`~finetune_ops.BatchState`) kept as it changes.

The file is the state's journal form: JSON lines, the first saying what the
journal is for::

    {"format": "finetune-ops/batch", "version": 1, "form": "journal", "command": "cancel",
     "base_url": "https://api.together.ai/v1", "created_at": "2026-12-02T06:00:00Z"}

(never the key). Every later line is one change of one job, in the state's
per-job shape:

- ``{"id": "ft-…", "cancel_accepted": true, "status": "cancel_requested"}``:
  the API answered 2xx to the job's cancel (with that status, when readable).
  Written the moment the answer arrives, before the job has ended.
- ``{"id": "ft-…", "status": "cancelled", "cancel_accepted": true, "result":
  {"ok": true, "status": "cancelled", "cancel_sent": true, "attempts": 1,
  "error": null}}``: the job's result in that run; with ``--journal-records``
  a ``"job"`` key adds the full last record.

Readers ignore keys they do not know, so later versions can add some. Each
line is written with one unbuffered write while the file is locked
(``fcntl.flock``) by the one run that may use it; a line cut short by a kill or
a full disk is removed when possible, and skipped on reading otherwise.

Resuming folds the lines, as a stream, into the state of the requested ids
(:meth:`BatchState.apply`) and runs the batch from it, as any resumed batch
runs: a job whose cancel was accepted is never sent a second one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune_ops._results import CancelResult
from finetune_ops._state import FORMAT, VERSION, BatchState, accepted_line, result_line

from ._exit import ConfigError

__all__ = ["Journal", "JournalError"]

FORM = "journal"
#: A header is short; a longer first line is not one (and is not read whole).
_MAX_HEADER = 64 * 1024
#: Unreadable line numbers listed in the warning before the rest are only counted.
_SHOWN_UNREADABLE = 10


class JournalError(Exception):
    """The journal could not be written; the batch stops and reports what completed."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"journal {str(path)!r}: cannot write: {reason}")


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
            "format": FORMAT,
            "version": VERSION,
            "form": FORM,
            "command": self._command,
            "base_url": self._base_url,
            "created_at": now,
        }

    def _check_header(self, line: bytes) -> None:
        name = repr(str(self.path))
        header = _parse(line)
        if header is None or header.get("format") != FORMAT or header.get("form") != FORM:
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

    def state(self, job_ids: Sequence[str]) -> BatchState:
        """The state of ``job_ids`` as the journal leaves it, read as a stream.

        Lines of other jobs are skipped, and equal results are read into one
        dict whose values every job's copy shares, so a large journal resumes
        in little memory.
        """
        state = BatchState(job_ids)
        shared: dict[str, dict[str, Any]] = {}
        for number, fact in self._facts():
            if fact is None:
                self._unreadable(number)
                continue
            if fact["id"] not in state.jobs:
                continue
            result = fact.get("result")
            if isinstance(result, dict):
                fact["result"] = shared.setdefault(json.dumps(result, sort_keys=True), result)
            if isinstance(fact.get("status"), str):
                fact["status"] = sys.intern(fact["status"])
            try:
                state.apply(fact)
            except ValueError:
                self._unreadable(number)
        return state

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

    # -- writing -----------------------------------------------------------------

    def accepted(self, job_id: str, status: str | None) -> None:
        """Record that the API accepted the job's cancel, answering with ``status``."""
        self._write(_line(accepted_line(job_id, status)))

    def result(self, result: CancelResult, job: dict[str, Any] | None) -> None:
        """Record the job's result; ``job`` is its unstructured record, kept with ``records``."""
        fact = result_line(result)
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


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
