"""Which jobs a command works on: ids from arguments and from a file or stdin, all checked."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence

from finetune_ops._errors import InvalidJobIdError
from finetune_ops._ids import check_job_id

from ._exit import ConfigError

__all__ = ["check_ids", "parse_id_lines", "read_ids"]


def parse_id_lines(lines: Iterable[str]) -> list[str]:
    """One id per line; blank lines and ``#`` comments (whole-line or trailing) are skipped.

    Ids are not checked here: an invalid one becomes that job's failure, so one
    typo does not stop the rest of a batch.
    """
    ids: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            ids.append(text)
    return ids


def read_ids(arguments: Sequence[str], from_file: str | None) -> list[str]:
    """The ids given as arguments, then those read from ``from_file`` ("-" for stdin).

    Duplicates are dropped, keeping the first occurrence.
    """
    ids = list(arguments)
    if from_file == "-":
        if sys.stdin is None:
            raise ConfigError("--from-file -: there is no standard input to read ids from")
        stdin = getattr(sys.stdin, "buffer", None)
        if stdin is None:
            ids += parse_id_lines(sys.stdin)
        else:
            try:
                ids += parse_id_lines(io.TextIOWrapper(stdin, encoding="utf-8-sig"))
            except UnicodeDecodeError as error:
                raise ConfigError(f"cannot read job ids from stdin: {error}") from None
    elif from_file is not None:
        try:
            # utf-8-sig drops the byte-order mark some editors write; newline=None reads CRLF.
            with open(from_file, encoding="utf-8-sig") as file:
                ids += parse_id_lines(file)
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise ConfigError(f"cannot read job ids from {from_file!r}: {reason}") from None
    return list(dict.fromkeys(ids))


def check_ids(ids: Sequence[str]) -> None:
    """Every id must be well formed before anything is sent: exit 2 naming the bad ones."""
    bad: list[str] = []
    for job_id in ids:
        try:
            check_job_id(job_id)
        except InvalidJobIdError as error:
            bad.append(error.message)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ConfigError(f"{bad[0]}{more}; nothing was sent")
