"""Server hints: how long a 429 or 503 asks us to wait, and whether to retry at all.

Hints come from untrusted headers, so every parser here returns ``None`` for
anything it cannot turn into a finite, non-negative number of seconds rather
than raising: a bad hint must never hide the status error behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

__all__ = ["budget_left", "retry_hint", "should_retry_hint"]

# Larger x-ratelimit-reset values are read as a Unix time, not a duration.
_EPOCH_THRESHOLD = 1_000_000_000.0


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def _http_date(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are always GMT
        return None
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


def retry_hint(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait, or ``None`` when it gave no usable hint.

    ``now`` is the current Unix time, used to read HTTP dates and reset times.
    The most precise header wins: ``retry-after-ms``, then ``Retry-After``
    (seconds or an HTTP date), then ``x-ratelimit-reset`` (seconds, or a Unix
    time when it is that large).
    """
    millis = headers.get("retry-after-ms")
    if millis is not None and (value := _number(millis)) is not None:
        return value / 1000.0
    after = headers.get("retry-after")
    if after is not None:
        value = _number(after)
        if value is None:
            value = _http_date(after, now)
        if value is not None:
            return value
    reset = headers.get("x-ratelimit-reset")
    if reset is not None and (value := _number(reset)) is not None:
        return max(0.0, value - now) if value >= _EPOCH_THRESHOLD else value
    return None


def budget_left(headers: Mapping[str, str], now: float) -> tuple[float, float] | None:
    """What ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` say is left of the budget.

    Returns (requests left, seconds until the budget resets), or ``None`` when
    the answer does not say both usably. The reset is seconds, or a Unix time
    when it is that large, as for :func:`retry_hint`.
    """
    remaining = headers.get("x-ratelimit-remaining")
    reset = headers.get("x-ratelimit-reset")
    if remaining is None or reset is None:
        return None
    left = _number(remaining)
    seconds = _number(reset)
    if left is None or seconds is None:
        return None
    if seconds >= _EPOCH_THRESHOLD:
        seconds = max(0.0, seconds - now)
    return left, seconds


def should_retry_hint(headers: Mapping[str, str]) -> bool | None:
    """The server's ``x-should-retry`` verdict, or ``None`` when it gave none."""
    value = headers.get("x-should-retry", "").strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None
