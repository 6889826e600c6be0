"""What goes out: JSON lines for results and records, and plain lines for people.

Results go to stdout; everything else (progress, warnings, failures, hints)
goes to stderr, so that ``--json`` output can be piped as it is.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Collection, Sequence
from typing import Any

import click
from rich.console import Console

from finetune_ops._converter import unstructure
from finetune_ops._errors import AuthenticationError, FinetuneOpsError
from finetune_ops._results import CancelResult

__all__ = [
    "MAX_LISTED",
    "auth_hint",
    "describe_error",
    "error_record",
    "note",
    "report_failures",
    "result_record",
    "silence_stdout",
    "stdout_console",
]

#: Failures listed one by one on stderr before the rest are only counted.
MAX_LISTED = 20


def error_record(error: BaseException) -> dict[str, Any]:
    """An error as JSON: its class name, message, and HTTP status when there was one."""
    record: dict[str, Any] = {
        "type": type(error).__name__,
        "message": error.message if isinstance(error, FinetuneOpsError) else str(error),
    }
    status_code = getattr(error, "status_code", None)
    if isinstance(status_code, int):
        record["status_code"] = status_code
    return record


def result_record(result: CancelResult, *, deleted: bool = False) -> dict[str, Any]:
    """One job's result as the JSON object that ``--json`` prints and the journal keeps.

    ``deleted`` adds whether the job is gone, for the results of a delete.
    """
    record: dict[str, Any] = {
        "job_id": result.job_id,
        "ok": result.ok,
        "status": None if result.status is None else str(result.status),
        "cancel_sent": result.cancel_sent,
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 3),
        "error": None if result.error is None else error_record(result.error),
        "job": None if result.job is None else unstructure(result.job),
    }
    if deleted:
        record["deleted"] = result.deleted
    return record


def stdout_console() -> Console:
    """A console for results on stdout; wide when not a terminal, so tables keep whole ids."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, _PIPE_WIDTH))
    return console


_PIPE_WIDTH = 160


def note(message: str) -> None:
    """A line for people on stderr."""
    click.echo(message, err=True)


def describe_error(error: BaseException) -> str:
    """``ClassName: message`` on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"


def report_failures(
    failed: Sequence[CancelResult], total: int, *, fail_on: Collection[str] = ()
) -> None:
    """List failed jobs on stderr (the first MAX_LISTED of them), then count them.

    A job that ended in one of the ``fail_on`` statuses is listed with that status.
    """
    if not failed:
        return
    for result in failed[:MAX_LISTED]:
        if result.error is None:
            note(f"failed: {result.job_id}: ended {result.status} (--fail-on)")
        else:
            note(f"failed: {result.job_id}: {describe_error(result.error)}")
    if len(failed) > MAX_LISTED:
        note(f"... and {len(failed) - MAX_LISTED} more (--json or --journal lists every result)")
    note(f"{len(failed)} of {total} jobs failed.")
    if any(isinstance(result.error, AuthenticationError) for result in failed):
        note(auth_hint())


def auth_hint() -> str:
    """What to do when the API refuses the key."""
    return "hint: the API refused the key; set TOGETHER_API_KEY or pass --api-key-file PATH"


def silence_stdout() -> None:
    """After the reader of stdout went away: send the rest of stdout to /dev/null.

    Otherwise every later write, and Python's own flush at exit, fails again.
    """
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
