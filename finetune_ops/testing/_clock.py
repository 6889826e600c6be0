"""Clocks that drive the simulated job lifecycle, and timestamp formatting.

The simulator never reads the time by itself: it asks a `Clock` for seconds
since some origin. `ManualClock` lets a test decide when time passes;
`RealClock` follows `time.monotonic()`. Timestamps in the JSON are the clock's
`epoch` (a timezone-aware datetime) plus `now()` seconds.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

#: Wall time that `ManualClock().now() == 0.0` stands for.
DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@runtime_checkable
class Clock(Protocol):
    """Anything with `now()`: seconds (float) since an arbitrary origin, never going back.

    A clock may also have an `epoch` attribute (an aware datetime): the wall
    time its origin stands for. Without one, the simulator takes the wall time
    at which it was created.
    """

    def now(self) -> float:
        """Seconds since the clock's origin."""
        ...


def _checked_epoch(epoch: datetime) -> datetime:
    if epoch.tzinfo is None:
        raise ValueError("epoch must be a timezone-aware datetime")
    return epoch.astimezone(UTC)


class ManualClock:
    """A clock that only moves when told to: `advance(seconds)`."""

    __slots__ = ("_now", "epoch")

    def __init__(self, start: float = 0.0, *, epoch: datetime = DEFAULT_EPOCH) -> None:
        if not math.isfinite(start):
            raise ValueError("start must be a finite number of seconds")
        self._now = float(start)
        self.epoch = _checked_epoch(epoch)

    def now(self) -> float:
        """Seconds since the origin; changes only through `advance()`."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (>= 0) and return the new `now()`."""
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"cannot advance a clock by {seconds!r} seconds")
        self._now += seconds
        return self._now

    def wall(self) -> datetime:
        """The current simulated wall time (UTC)."""
        return self.epoch + timedelta(seconds=self._now)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r}, epoch={self.epoch.isoformat()!r})"


class RealClock:
    """Monotonic time since construction; its epoch is the wall time at construction."""

    __slots__ = ("_origin", "epoch")

    def __init__(self) -> None:
        self._origin = time.monotonic()
        self.epoch = datetime.now(UTC)

    def now(self) -> float:
        """Seconds since the clock was created."""
        return time.monotonic() - self._origin

    def wall(self) -> datetime:
        """The current wall time, kept consistent with `now()`."""
        return self.epoch + timedelta(seconds=self.now())

    def __repr__(self) -> str:
        return f"RealClock(now={self.now():.3f})"


def epoch_of(clock: Clock) -> datetime:
    """The wall time that `clock.now() == 0` stands for."""
    epoch = getattr(clock, "epoch", None)
    if isinstance(epoch, datetime):
        return _checked_epoch(epoch)
    return datetime.now(UTC) - timedelta(seconds=clock.now())


class TimestampFormatter:
    """Turns clock seconds into `2026-01-01T00:00:00.000Z` strings.

    Jobs share few distinct instants (a batch preloaded at once, transitions
    due together), and formatting is the expensive part of rendering a job, so
    recent results are remembered.
    """

    __slots__ = ("_cache", "_epoch")

    _CACHE_LIMIT = 4096

    def __init__(self, epoch: datetime) -> None:
        # Naive UTC keeps isoformat() free of an offset we would strip again.
        self._epoch = _checked_epoch(epoch).replace(tzinfo=None)
        self._cache: dict[int, str] = {}

    def __call__(self, seconds: float) -> str:
        ms = round(seconds * 1000)
        text = self._cache.get(ms)
        if text is None:
            moment = self._epoch + timedelta(milliseconds=ms)
            text = moment.isoformat(timespec="milliseconds") + "Z"
            if len(self._cache) >= self._CACHE_LIMIT:
                self._cache.clear()
            self._cache[ms] = text
        return text
