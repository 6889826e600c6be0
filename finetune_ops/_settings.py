"""Where the API key and base URL come from, and the checks they must pass."""

from __future__ import annotations

import ipaddress
import os

from yarl import URL

__all__ = [
    "DEFAULT_BASE_URL",
    "Secret",
    "check_api_key",
    "is_loopback",
    "resolve_api_key",
    "resolve_base_url",
]

DEFAULT_BASE_URL = "https://api.together.ai/v1"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class Secret:
    """A string that never shows itself in a repr, str or log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def resolve_api_key(api_key: str | None) -> Secret | None:
    """The key from the argument, else ``TOGETHER_API_KEY``; ``None`` when neither is set."""
    if api_key is None:
        api_key = os.environ.get("TOGETHER_API_KEY") or None
    if api_key is None:
        return None
    return Secret(check_api_key(api_key))


def check_api_key(api_key: object, *, source: str = "api_key") -> str:
    """The key without surrounding space; ValueError naming ``source`` if it cannot be sent.

    The one rule for every way a key arrives (argument, environment, the
    command line's key file): a non-empty string without CR, LF or NUL, which
    would break or split the Authorization header.
    """
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError(f"{source} must be a non-empty string")
    if any(ch in api_key for ch in "\r\n\0"):
        raise ValueError(f"{source} contains a line break or NUL character")
    return api_key.strip()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: localhost or a loopback address."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str | None, *, allow_insecure_http: bool = False) -> str:
    """The API root ending in ``/v1``, from the argument, else ``TOGETHER_BASE_URL``.

    Refuses URLs with credentials, queries or fragments, and plain http to a
    host that is not loopback unless ``allow_insecure_http`` is set.
    """
    raw = base_url or os.environ.get("TOGETHER_BASE_URL") or DEFAULT_BASE_URL
    try:
        url = URL(raw.strip())
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid base URL {raw!r}: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base URL must be an http(s) URL with a host, got {raw!r}")
    if url.user is not None or url.password is not None:
        raise ValueError("base URL must not carry credentials; pass api_key instead")
    if url.query_string or url.fragment:
        raise ValueError(f"base URL must not have a query or fragment, got {raw!r}")
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(url.host):
        raise ValueError(
            f"refusing plain http to {url.host!r}: the API key would travel unencrypted; "
            "use https, or pass allow_insecure_http=True"
        )
    path = url.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return str(url.with_path(path))
