"""The gate every request of one manager passes before it is sent.

It enforces two things that concern the manager as a whole rather than one
request: an optional steady request rate (a token bucket), and a shared pause
after a 429 that carried a server hint, so that a rate-limited batch backs off
together instead of sending one retry per job into the limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

__all__ = ["RequestGate"]


class RequestGate:
    """Pace requests to ``rate`` per second (``None``: unpaced) and honour shared pauses.

    ``burst`` requests may go at once after a quiet spell; the default is one
    second's worth.
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"max_requests_per_second must be a positive number, got {rate!r}")
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = self._interval * (max(1, burst or math.ceil(rate or 1)) - 1)
        self._clock = clock
        self._sleep = sleep
        self._next_slot = -math.inf  # when the bucket is next empty of delay
        self._paused_until = -math.inf

    @property
    def paused_for(self) -> float:
        """Seconds left of the current shared pause (0 when none)."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every request that has not started yet for ``seconds`` from now."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def wait(self) -> None:
        """Return when a request may be sent."""
        while (delay := self._paused_until - self._clock()) > 0:
            await self._sleep(delay)
        if not self._interval:
            return
        now = self._clock()
        # Generic cell rate algorithm: each request books the next slot.
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        delay = slot - now - self._tolerance
        if delay > 0:
            await self._sleep(delay)
