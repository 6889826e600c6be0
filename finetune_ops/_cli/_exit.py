"""Exit statuses, one per meaning for every command, and the usage error that ends a command.

| status | meaning |
| --- | --- |
| 0 | every job ended as asked |
| 1 | some jobs did not (failed, timed out, not found, or ended in a ``--fail-on`` status), or the journal or stdout could not be written |
| 2 | usage or configuration error (an option, an invalid id, an unknown status, a journal in use or for another command); nothing was sent |
| 3 | the API refused the key (401); nothing more was sent |
| 4 | answered "no" at the prompt; nothing was sent |
| 128 + N | stopped by signal N: 129 SIGHUP, 130 SIGINT (Ctrl-C), 143 SIGTERM |
| 141 | stdout was closed (``| head``); the batch stopped, every accepted cancel journaled |
"""  # noqa: E501

from __future__ import annotations

import enum
import signal

import click

__all__ = ["ConfigError", "Exit"]


class Exit(enum.IntEnum):
    """What the process exit status tells a script."""

    OK = 0
    """Every job ended as asked."""
    FAILED = 1
    """Some jobs did not (they are listed on stderr), a request failed, or the journal broke."""
    USAGE = 2
    """Bad usage or configuration; nothing was sent."""
    REFUSED = 3
    """The API refused the key (401); nothing more was sent."""
    DECLINED = 4
    """The answer at the prompt was no; nothing was sent."""
    HUNG_UP = 128 + signal.SIGHUP
    """Stopped by SIGHUP after reporting what had completed."""
    INTERRUPTED = 128 + signal.SIGINT
    """Stopped by Ctrl-C (SIGINT) after reporting what had completed."""
    STDOUT_CLOSED = 128 + signal.SIGPIPE
    """The reader of stdout went away; the batch stopped."""
    TERMINATED = 128 + signal.SIGTERM
    """Stopped by SIGTERM after reporting what had completed."""

    @classmethod
    def for_signal(cls, signum: int) -> Exit:
        """The status for a run that the signal ``signum`` stopped."""
        return cls(128 + signum)


class ConfigError(click.ClickException):
    """A usage or configuration problem, shown as one line, exit status 2."""

    exit_code = Exit.USAGE
