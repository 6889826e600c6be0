"""SIGINT, SIGTERM and SIGHUP: each stops a command the same way, with status 128 + signal.

``timeout``, systemd, Kubernetes and CI stop a process with SIGTERM, a closed
terminal sends SIGHUP: all of them mean what Ctrl-C means. While an event loop
runs (:func:`run`), a signal cancels the command's main task, so a batch stops
sending, keeps what completed and reports it. Anywhere else (a prompt, an
import), SIGTERM and SIGHUP raise :class:`Stopped`, a KeyboardInterrupt, like
Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any

__all__ = ["STOPPING_SIGNALS", "Stopped", "install", "run"]

#: The signals besides SIGINT that stop a command as Ctrl-C does.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived outside an event loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def install() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Stopped`; let a file-size limit fail a write.

    Without the last, ``ulimit -f`` kills the process with SIGXFSZ in the
    middle of a journal write instead of letting the write fail with EFBIG.
    """
    for signum in STOPPING_SIGNALS:
        signal.signal(signum, _raise_stopped)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def run(main: Coroutine[Any, Any, None]) -> int | None:
    """``asyncio.run(main)``; the number of the signal that stopped it, or None.

    On SIGINT asyncio itself cancels ``main``; on SIGTERM or SIGHUP the handler
    here does the same. Either way ``main`` winds down (its batch stops and
    closes its connections) before this returns.
    """
    caught: list[int] = []

    async def guarded() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(signum: int) -> None:
            if not caught:  # a second signal while winding down changes nothing
                task.cancel()
            caught.append(signum)

        # Signal handlers belong to the main thread; elsewhere (a test's worker
        # thread) the command runs without them.
        handling = threading.current_thread() is threading.main_thread()
        if handling:
            for signum in STOPPING_SIGNALS:
                loop.add_signal_handler(signum, stop, signum)
        try:
            await main
        except asyncio.CancelledError:
            if not caught or task.uncancel() > 0:
                raise
        finally:
            if handling:
                for signum in STOPPING_SIGNALS:
                    loop.remove_signal_handler(signum)
                install()  # remove_signal_handler restored the default action

    try:
        asyncio.run(guarded())
    except Stopped as stopped:
        return stopped.signum
    except KeyboardInterrupt:
        return signal.SIGINT
    return caught[0] if caught else None
