"""Where to connect: the base URL and API key from the command's options and environment.

The key is read from ``TOGETHER_API_KEY`` or from the file named by
``--api-key-file``, never from an option's value (which would land in shell
history and ``ps`` output), and it is never printed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import click
from yarl import URL

from finetune_ops._settings import resolve_base_url

from ._exit import ConfigError

__all__ = ["Connection", "api_options"]

F = TypeVar("F", bound=Callable[..., object])


@attrs.frozen
class Connection:
    """A checked base URL and the key (hidden from repr) to reach the API with."""

    base_url: str
    api_key: str | None = attrs.field(default=None, repr=False)
    allow_insecure_http: bool = False

    @classmethod
    def from_options(
        cls, base_url: str | None, api_key_file: Path | None, allow_insecure_http: bool
    ) -> Connection:
        """Resolve and check the options; ConfigError (exit 2) on any problem."""
        try:
            url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        except ValueError as error:
            message = str(error).replace("allow_insecure_http=True", "--allow-insecure-http")
            raise ConfigError(message) from None
        key = _key_from_file(api_key_file) if api_key_file is not None else _key_from_env()
        if key is None and not _is_loopback(url):
            raise ConfigError(
                f"no API key for {url}: set TOGETHER_API_KEY or pass --api-key-file PATH"
            )
        return cls(url, key, allow_insecure_http)


def _key_from_env() -> str | None:
    key = os.environ.get("TOGETHER_API_KEY", "").strip()
    if not key:
        return None
    if any(char.isspace() for char in key):
        raise ConfigError("TOGETHER_API_KEY must be a single word without spaces or line breaks")
    return key


def _key_from_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"cannot read the API key file {str(path)!r}: {reason}") from None
    key = text.strip()
    if not key:
        raise ConfigError(f"the API key file {str(path)!r} is empty")
    if any(char.isspace() for char in key):
        raise ConfigError(f"the API key file {str(path)!r} must hold only the key, on one line")
    return key


def _is_loopback(base_url: str) -> bool:
    host = URL(base_url).host or ""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_options(command: F) -> F:
    """Add ``--base-url``, ``--api-key-file`` and ``--allow-insecure-http`` to a command."""
    options = (
        click.option(
            "--base-url",
            metavar="URL",
            help="API root (default: $TOGETHER_BASE_URL, else https://api.together.ai/v1).",
        ),
        click.option(
            "--api-key-file",
            metavar="PATH",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the API key from this file (default: $TOGETHER_API_KEY).",
        ),
        click.option(
            "--allow-insecure-http",
            is_flag=True,
            help="Allow plain http to a host that is not loopback (sends the key unencrypted).",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command
