"""The three clients under comparison, each a coroutine with the same signature.

Each one cancels every job and then watches it until it is terminal, at most
``settings.concurrency`` requests in flight and ``settings.poll_interval``
seconds between two looks at the same job, and returns what it saw.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

import attrs


@attrs.frozen(kw_only=True)
class Settings:
    """What every client is given: where, which jobs, how hard, how often, how long."""

    base_url: str  # ".../v1"
    api_key: str
    concurrency: int
    poll_interval: float
    timeout: float


@attrs.define(kw_only=True)
class Outcome:
    """What a client saw: jobs it saw terminal, and its errors by kind (for the log)."""

    terminal: int
    errors: dict[str, int] = attrs.Factory(dict)


Client = Callable[[list[str], Settings], Awaitable[Outcome]]

_MODULES = {"finetune_ops": "fo", "raw": "raw", "sdk": "sdk", "floor": "floor"}


def load(name: str) -> Client:
    """The client called ``name``; importing it (and its library) happens here."""
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    client: Client = module.run
    return client
