"""``--journal PATH``: an append-only JSON-lines record of results, for resuming a batch.

Each result is written as one complete line and flushed as soon as the job has
it, so a run that is killed loses nothing it had finished. Reading a journal
back tells which ids are already done, so running the same command again skips
them instead of cancelling twice. A line cut short (the process was killed
while writing it) is ignored on reading and never glued to the next one.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from finetune_ops._records import JobStatus

from ._exit import ConfigError

__all__ = ["Journal"]


class Journal:
    """The results recorded so far in one journal file, and a way to append more."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: The last record read for each job id.
        self.records: dict[str, dict[str, Any]] = {}
        #: Lines that could not be read (numbered from 1), cut short or not results.
        self.unreadable: list[int] = []
        self._file: IO[bytes] | None = None
        self._needs_newline = False
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as error:
            raise ConfigError(
                f"cannot read the journal {str(self.path)!r}: {error.strerror}"
            ) from None
        self._needs_newline = bool(data) and not data.endswith(b"\n")
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            record = _parse(line)
            if record is None:
                self.unreadable.append(number)
            else:
                self.records[record["job_id"]] = record

    def done(self, *, wait: bool) -> set[str]:
        """Ids that need no more work: an ok result, in a terminal status when ``wait``.

        Without ``wait`` (``cancel --no-wait``), an accepted cancel is enough.
        """
        return {
            job_id
            for job_id, record in self.records.items()
            if record["ok"] and (not wait or _is_terminal(record.get("status")))
        }

    def __enter__(self) -> Journal:
        try:
            self._file = self.path.open("ab")
        except OSError as error:
            raise ConfigError(
                f"cannot open the journal {str(self.path)!r}: {error.strerror}"
            ) from None
        if self._needs_newline:
            # End the line a killed run left unfinished, so the next one stands alone.
            self._file.write(b"\n")
            self._file.flush()
            self._needs_newline = False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a complete line and flush it to the operating system."""
        if self._file is None:
            raise RuntimeError("open the journal with 'with' before appending")
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        self._file.write(line)  # one write: a Ctrl-C cannot split the line
        self._file.flush()
        self.records[record["job_id"]] = record


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("job_id"), str)
        or not isinstance(record.get("ok"), bool)
    ):
        return None
    return record


def _is_terminal(status: object) -> bool:
    return isinstance(status, str) and JobStatus(status).is_terminal
