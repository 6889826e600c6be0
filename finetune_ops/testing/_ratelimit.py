"""A server-side rate limit, as an API gateway enforces one, with the headers it sends.

`RateLimit(requests=N, per=S)` admits N requests per S seconds; the rest get
a 429 whose `Retry-After` says, in fractional seconds, when the next request
would be admitted. A client that keeps sending meanwhile makes a 429 storm.

How the budget is counted (`window`):

* "fixed": windows of S seconds back to back; each admits N requests.
* "sliding": at most N requests in any S seconds (a log of admissions).
* "token_bucket": a bucket of N tokens refilled at N/S per second; a quiet
  spell lets a burst of up to N through.

Every answer (admitted or not) carries `x-ratelimit-limit` (the budget now),
`x-ratelimit-remaining` (what is left of it) and `x-ratelimit-reset`
(seconds, fractional, until the budget is whole again), as Together's API
sends them.

A dynamic budget: `schedule=[(0, 500), (10, 250), (30, 500)]` makes the
budget 500 from the start, 250 from t=10 s and 500 again from t=30 s (t counted
from the limiter's creation on its clock); a budget of 0 refuses everything
(an outage of the account's limit). `capacity_short=0.1` answers 503 to a
seeded 10% of the requests that are within the budget: the service is short
of capacity, which is not the account's fault (429 means over your rate, 503
short of capacity while within it).

Time is real (`time.monotonic`) unless `clock` gives another source of
seconds, e.g. a `ManualClock`'s `now` for deterministic tests.
"""

from __future__ import annotations

import bisect
import collections
import enum
import math
import random
import time
from collections.abc import Callable, Iterable

import attrs

from ._responses import format_seconds

__all__ = ["Decision", "RateLimit", "RateLimiter", "Window"]


class Window(enum.StrEnum):
    """How a `RateLimit` counts its budget."""

    FIXED = "fixed"
    SLIDING = "sliding"
    TOKEN_BUCKET = "token_bucket"


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


def _share(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be at least 0 and below 1, got {value!r}")


def _to_schedule(value: Iterable[tuple[float, int]]) -> tuple[tuple[float, int], ...]:
    steps = tuple((float(at), budget) for at, budget in value)
    for at, budget in steps:
        if not (at >= 0 and math.isfinite(at)):
            raise ValueError(f"schedule times must be finite seconds >= 0, got {at!r}")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ValueError(f"schedule budgets must be whole numbers >= 0, got {budget!r}")
    times = [at for at, _ in steps]
    if times != sorted(set(times)):
        raise ValueError("schedule times must be increasing")
    return steps


@attrs.frozen(kw_only=True)
class RateLimit:
    """Admit `requests` requests per `per` seconds, counted as `window` says.

    `schedule` changes the budget over time: (from t seconds, budget) pairs in
    increasing t; before the first pair the budget is `requests`.
    `capacity_short` is the share of admitted requests answered 503 instead,
    drawn from `random.Random(seed)`. `clock` returns seconds (default
    `time.monotonic`).
    """

    requests: int = attrs.field(validator=_count)
    per: float = attrs.field(default=1.0, converter=float, validator=_positive)
    window: Window = attrs.field(default=Window.FIXED, converter=Window)
    schedule: tuple[tuple[float, int], ...] = attrs.field(default=(), converter=_to_schedule)
    capacity_short: float = attrs.field(default=0.0, converter=float, validator=_share)
    seed: int = 0
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)

    def budget_at(self, elapsed: float) -> int:
        """The budget per `per` seconds, `elapsed` seconds after the limiter started."""
        index = bisect.bisect_right([at for at, _ in self.schedule], elapsed)
        return self.requests if index == 0 else self.schedule[index - 1][1]

    def next_change(self, elapsed: float) -> float:
        """Seconds from `elapsed` until the schedule next changes the budget (inf: never)."""
        for at, _ in self.schedule:
            if at > elapsed:
                return at - elapsed
        return math.inf


@attrs.frozen
class Decision:
    """What the limiter says of one request: pass, 429 after `wait` seconds, or 503."""

    admitted: bool
    wait: float = 0.0
    short_of_capacity: bool = False


_PASS = Decision(True)
_SHORT = Decision(True, short_of_capacity=True)


class RateLimiter:
    """Counts requests against a `RateLimit`; `decide()` judges one, `headers()` describe it."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] | None = None) -> None:
        self.limit = limit
        self._clock = limit.clock if clock is None else clock
        self._start = self._clock()
        self._budget = limit.budget_at(0.0)
        self._window_start = self._start
        self._used = 0
        self._log: collections.deque[float] = collections.deque()
        self._tokens = float(self._budget)
        self._filled_at = self._start
        self._random = random.Random(limit.seed)
        self.refused = 0
        self.short = 0

    def admit(self) -> float | None:
        """None when the request may pass, else seconds until one would be admitted."""
        decision = self.decide()
        return None if decision.admitted else decision.wait

    def decide(self) -> Decision:
        """Count one request and say what it gets."""
        now = self._update()
        wait = self._take(now)
        if wait is not None:
            self.refused += 1
            return Decision(False, wait)
        if self.limit.capacity_short and self._random.random() < self.limit.capacity_short:
            self.short += 1
            return _SHORT
        return _PASS

    def headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers for an answer sent now."""
        now = self._update()
        remaining, reset = self._state(now)
        return {
            "x-ratelimit-limit": str(self._budget),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": format_seconds(max(0.0, reset)),
        }

    # -- the three ways of counting -------------------------------------------

    def _update(self) -> float:
        now = self._clock()
        budget = self.limit.budget_at(now - self._start)
        if budget != self._budget:
            self._refill(now)
            self._budget = budget
            self._tokens = min(self._tokens, float(budget))
        window = self.limit.window
        if window is Window.FIXED:
            elapsed = now - self._window_start
            if elapsed >= self.limit.per:
                self._window_start = now - elapsed % self.limit.per
                self._used = 0
        elif window is Window.SLIDING:
            log = self._log
            while log and log[0] <= now - self.limit.per:
                log.popleft()
        else:
            self._refill(now)
        return now

    def _refill(self, now: float) -> None:
        rate = self._budget / self.limit.per
        self._tokens = min(float(self._budget), self._tokens + (now - self._filled_at) * rate)
        self._filled_at = now

    def _take(self, now: float) -> float | None:
        """Spend one unit of the budget, or return the wait until one is free."""
        if self._budget == 0:
            # Nothing is admitted until the schedule gives a budget back.
            change = self.limit.next_change(now - self._start)
            return self.limit.per if math.isinf(change) else change
        window = self.limit.window
        if window is Window.FIXED:
            if self._used < self._budget:
                self._used += 1
                return None
            return self._window_start + self.limit.per - now
        if window is Window.SLIDING:
            log = self._log
            if len(log) < self._budget:
                log.append(now)
                return None
            return log[len(log) - self._budget] + self.limit.per - now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) * self.limit.per / self._budget

    def _state(self, now: float) -> tuple[int, float]:
        """(requests left of the budget now, seconds until the budget is whole again)."""
        budget, per = self._budget, self.limit.per
        if budget == 0:
            change = self.limit.next_change(now - self._start)
            return 0, per if math.isinf(change) else change
        window = self.limit.window
        if window is Window.FIXED:
            return max(0, budget - self._used), self._window_start + per - now
        if window is Window.SLIDING:
            log = self._log
            reset = log[-1] + per - now if log else 0.0
            return max(0, budget - len(log)), reset
        return int(self._tokens), (budget - self._tokens) * per / budget
