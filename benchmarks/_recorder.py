"""What the rate scenarios need the simulator to record, and the outage it plays.

An aiohttp middleware put in front of the simulator's own: it counts answers
per second of the run (the run starts at the first request), the 429s, the
successes, and the time of the last request; in the outage scenario it answers
every request with a 503 for ``outage_for`` seconds from ``outage_at`` seconds
into the run, and counts what it refused.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OUTAGE_BODY = json.dumps({"error": {"message": "service unavailable", "type": "outage"}})


class Recorder:
    """Counts answers by second and kind; plays an outage when asked."""

    def __init__(self, *, outage_at: float = 0.0, outage_for: float = 0.0) -> None:
        self.created = time.monotonic()
        self.first: float | None = None
        self.last = 0.0
        self.outage_at, self.outage_for = outage_at, outage_for
        self.per_second: Counter[int] = Counter()
        self.succeeded = 0
        self.rate_limited = 0
        self.in_outage = 0

    def _now(self) -> float:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        return now - self.first

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        at = self._now()
        self.per_second[int(at)] += 1
        if self.outage_for and self.outage_at <= at < self.outage_at + self.outage_for:
            self.in_outage += 1
            return web.Response(status=503, text=_OUTAGE_BODY, content_type="application/json")
        try:
            response = await handler(request)
        except web.HTTPException as error:
            self._count(error.status)
            raise
        self._count(response.status)
        return response

    def _count(self, status: int) -> None:
        if status == 429:
            self.rate_limited += 1
        elif status < 400:
            self.succeeded += 1

    def stats(self, budget_at: Callable[[float], int] | None) -> dict[str, Any]:
        """The figures, with the budget available over the run when a limit was set."""
        first = self.first if self.first is not None else self.created
        span = max(0.0, self.last - first)
        data: dict[str, Any] = {
            "span_seconds": span,
            "succeeded": self.succeeded,
            "rate_limited": self.rate_limited,
            "per_second": [self.per_second.get(second, 0) for second in range(int(span) + 1)],
        }
        if budget_at is not None:
            # The limiter's clock starts when the simulator is built, before the first request.
            offset, step = first - self.created, 0.01
            steps = int(span / step)
            available = sum(budget_at(offset + i * step) for i in range(steps))
            data["budget_available"] = available * step
        if self.outage_for:
            data["outage_requests"] = self.in_outage
            data["outage_seconds"] = self.outage_for
            data["after_outage_seconds"] = max(0.0, span - (self.outage_at + self.outage_for))
        return data
