"""A server-side rate limit, as an API gateway enforces one: fixed windows of real time.

Each window of `per` seconds admits `requests` requests; the rest get a 429
whose `Retry-After` says, in fractional seconds, when the window resets. A
client that keeps sending meanwhile makes a 429 storm.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs

__all__ = ["RateLimit", "RateLimiter"]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RateLimit:
    """Admit `requests` requests per window of `per` seconds (real time)."""

    requests: int = attrs.field(validator=_count)
    per: float = attrs.field(default=1.0, converter=float, validator=_positive)


class RateLimiter:
    """Counts requests per window; `admit()` says how long a refused one should wait."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._window_start = clock()
        self._used = 0
        self.refused = 0

    def admit(self) -> float | None:
        """None when the request may pass, else seconds until the window resets."""
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed >= self.limit.per:
            self._window_start = now - elapsed % self.limit.per
            self._used = 0
        if self._used < self.limit.requests:
            self._used += 1
            return None
        self.refused += 1
        return self._window_start + self.limit.per - now
