"""Policies: small frozen values that say how hard to try, how often to look and how long to wait.

Each has documented defaults in a module-level ``DEFAULT_*`` constant and is
changed with :func:`attrs.evolve`. Durations are seconds as ``float``; a
:class:`datetime.timedelta` is accepted too.
"""

from __future__ import annotations

import math
from datetime import timedelta

import attrs

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "RETRYABLE_STATUSES",
    "PollPolicy",
    "RetryPolicy",
    "Timeouts",
    "seconds",
]

#: Statuses worth another try: the server may answer differently next time.
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


def seconds(value: float | timedelta) -> float:
    """A duration as float seconds, from a number or a timedelta."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a duration must be seconds or a timedelta, not {type(value).__name__}")
    if math.isnan(value):
        raise ValueError("a duration cannot be NaN")
    return float(value)


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _sorted_set(values: frozenset[int]) -> str:
    return "{" + ", ".join(map(str, sorted(values))) + "}"


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How one HTTP request is retried.

    - ``attempts``: tries in all, the first included (1 disables retrying). A
      429 that said how long to wait does not count, nor a try that failed while
      the rate gate sees an outage: only the deadlines bound those.
    - ``deadline``: seconds from before the first try after which no new try starts.
    - ``wait_initial``, ``wait_max``, ``wait_exp_base``: exponential backoff between
      tries, ``wait_initial * wait_exp_base ** n`` capped at ``wait_max``.
    - ``wait_throttled``: the backoff's start instead of ``wait_initial`` after a
      429 that did not say how long to wait.
    - ``wait_jitter``: up to this many random seconds added to each backoff wait.
    - ``retry_statuses``: HTTP statuses retried. Connection errors, timeouts and
      bodies cut short or unreadable are always retried; a body over its cap and
      JSON of the wrong shape never (a retry would fetch them again), nor
      ``asyncio.CancelledError``.

    A server's hint (``Retry-After``, ``retry-after-ms``, ``x-ratelimit-reset``)
    replaces the backoff wait. A hint longer than the deadline leaves raises
    :class:`RateLimitError` at once rather than retrying early.

    The backoff starts where the AWS SDKs' standard retry mode (2026) starts
    it: 50 ms after a transient failure (a 5xx, a reset), a second after a
    request to slow down. What keeps retries from piling onto an API that is
    down is the rate gate's outage mode, not the length of one backoff.
    """

    attempts: int = attrs.field(default=6, validator=attrs.validators.ge(1))
    deadline: float = attrs.field(default=60.0, converter=seconds, validator=_positive)
    wait_initial: float = attrs.field(default=0.05, converter=seconds, validator=_non_negative)
    wait_throttled: float = attrs.field(default=1.0, converter=seconds, validator=_non_negative)
    wait_max: float = attrs.field(default=8.0, converter=seconds, validator=_non_negative)
    wait_exp_base: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    wait_jitter: float = attrs.field(default=0.05, converter=seconds, validator=_non_negative)
    retry_statuses: frozenset[int] = attrs.field(
        default=RETRYABLE_STATUSES, converter=frozenset, repr=_sorted_set
    )

    @classmethod
    def no_retry(cls) -> RetryPolicy:
        """A policy that tries once."""
        return cls(attempts=1)

    def backoff(self, retry_number: int, *, throttled: bool = False) -> float:
        """The wait before retry ``retry_number`` (1 for the first), without jitter.

        ``throttled``: after a 429 that gave no hint, when the wait starts at
        ``wait_throttled``.
        """
        exponent = min(retry_number - 1, 64)  # keeps the power finite
        start = self.wait_throttled if throttled else self.wait_initial
        return min(self.wait_max, start * self.wait_exp_base**exponent)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How a job is watched until it is terminal.

    The first look comes ``interval`` seconds after the start, each later one
    ``growth`` times further apart, at most ``max_interval``, each varied by up
    to ``jitter`` (a fraction) so that many waiters do not move in lockstep.
    ``timeout`` is a waiting call's deadline when it gives none (it bounds the
    whole call, cancels included); ``math.inf`` waits for ever.
    ``batch_threshold``: with more jobs than this waiting, one list request per
    tick serves them all instead of one request per job.
    """

    interval: float = attrs.field(default=1.0, converter=seconds, validator=_positive)
    growth: float = attrs.field(default=1.5, validator=attrs.validators.ge(1.0))
    max_interval: float = attrs.field(default=30.0, converter=seconds, validator=_positive)
    timeout: float = attrs.field(default=600.0, converter=seconds, validator=_non_negative)
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    batch_threshold: int = attrs.field(default=8, validator=attrs.validators.ge(0))

    def delay(self, tick: int) -> float:
        """The pause before look number ``tick`` (0 for the first), without jitter."""
        exponent = min(tick, 256)
        return min(self.max_interval, self.interval * self.growth**exponent)


@attrs.frozen(kw_only=True)
class Timeouts:
    """Per-request time limits in seconds.

    ``connect`` bounds getting a connection (pool wait included); ``request``
    bounds one HTTP attempt end to end, body included. Retries each get their own.
    """

    connect: float = attrs.field(default=5.0, converter=seconds, validator=_positive)
    request: float = attrs.field(default=30.0, converter=seconds, validator=_positive)


DEFAULT_RETRY = RetryPolicy()
DEFAULT_POLL = PollPolicy()
DEFAULT_TIMEOUTS = Timeouts()
