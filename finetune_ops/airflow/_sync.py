"""Running the library's coroutines from an operator's synchronous methods."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``make()`` to completion on an event loop of its own and return its result.

    Where this thread already runs a loop (``on_kill`` called from a signal
    handler while ``execute`` waits, or a test runner's loop), the coroutine
    gets a fresh loop on a thread of its own instead: ``asyncio.run`` refuses to
    nest.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # handed to the calling thread, which raises it
            box["error"] = exc

    thread = threading.Thread(target=target, name="finetune-ops-sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["value"]
    return result
