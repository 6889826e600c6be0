"""Where to connect: the base URL and API key from the command's options and environment.

The key is read from ``TOGETHER_API_KEY`` or from the file named by
``--api-key-file``, never from an option's value (which would land in shell
history and ``ps`` output), and it is never printed. The rules a key and a
base URL must pass are the library's own (``finetune_ops._settings``).

The connection options are accepted before the subcommand
(``finetune-ops --base-url URL cancel ...``) and after it; after wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
from yarl import URL

from finetune_ops._settings import check_api_key, is_loopback, resolve_base_url

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
        """Resolve and check the options; ConfigError (exit 2) on any problem.

        Options left unset here fall back to those given before the subcommand.
        """
        root = _root_params()
        base_url = base_url or root.get("base_url")
        api_key_file = api_key_file or root.get("api_key_file")
        allow_insecure_http = allow_insecure_http or bool(root.get("allow_insecure_http"))
        try:
            url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        except ValueError as error:
            message = str(error).replace("allow_insecure_http=True", "--allow-insecure-http")
            raise ConfigError(message) from None
        key = _key_from_file(api_key_file) if api_key_file is not None else _key_from_env()
        if key is None and not is_loopback(URL(url).host or ""):
            raise ConfigError(
                f"no API key for {url}: set TOGETHER_API_KEY or pass --api-key-file PATH"
            )
        return cls(url, key, allow_insecure_http)


def _root_params() -> dict[str, Any]:
    context = click.get_current_context(silent=True)
    return {} if context is None else context.find_root().params


def _key_from_env() -> str | None:
    value = os.environ.get("TOGETHER_API_KEY") or None
    if value is None:
        return None
    try:
        return check_api_key(value, source="TOGETHER_API_KEY")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _key_from_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"cannot read the API key file {str(path)!r}: {reason}") from None
    try:
        # A file's final line break is not part of the key; any other is.
        return check_api_key(text.strip(), source=f"the API key file {str(path)!r}")
    except ValueError as error:
        raise ConfigError(str(error)) from None


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
