"""Exit statuses, and the error that ends a command with "fix how you called me"."""

from __future__ import annotations

import enum

import click

__all__ = ["ConfigError", "Exit"]


class Exit(enum.IntEnum):
    """What the process exit status tells a script."""

    OK = 0
    """Every job ended as asked."""
    FAILED = 1
    """Some jobs did not (they are listed on stderr), or the API refused a request."""
    USAGE = 2
    """Bad usage or configuration; nothing was sent."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (SIGINT) after reporting what had completed."""


class ConfigError(click.ClickException):
    """A usage or configuration problem, shown as one line, exit status 2."""

    exit_code = Exit.USAGE
