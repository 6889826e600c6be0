"""Retrying one HTTP request: tenacity underneath, our RetryPolicy on top.

Users never see tenacity's types. The wait between tries is the server's hint
when it gave one, else exponential backoff with jitter. A hint that would not
fit in what is left of the deadline stops the retrying at once, so the caller
gets the RateLimitError (with ``retry_after``) instead of an early retry.
``asyncio.CancelledError`` is never retried: it is not one of our errors.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import tenacity

from ._errors import (
    APIConnectionError,
    APIStatusError,
    FinetuneOpsError,
    InvalidResponseError,
    RateLimitError,
)
from ._policies import RetryPolicy

__all__ = ["RetryEvent", "Sleep", "is_retryable", "retry_wait", "retrying"]

logger = logging.getLogger("finetune_ops")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@attrs.frozen(kw_only=True)
class RetryEvent:
    """A failed try that will be tried again after ``wait`` seconds.

    ``attempt`` is the number of the try that failed (1 for the first).
    """

    job_id: str | None
    endpoint: str
    attempt: int
    wait: float
    cause: FinetuneOpsError


def is_retryable(error: BaseException, policy: RetryPolicy) -> bool:
    """Whether ``error`` is worth another try under ``policy``: whether asking again can change.

    No usable answer (a connection failure, a timeout, a body cut short or not
    JSON) may be different next time; so may the statuses of the policy, unless
    the server said ``x-should-retry``. A body over the size cap, JSON of the
    wrong shape and every other status would come back the same.
    """
    if isinstance(error, InvalidResponseError):
        return error.transient
    if isinstance(error, APIConnectionError):
        return True
    if isinstance(error, APIStatusError):
        if error.should_retry is not None:
            return error.should_retry
        return error.status_code in policy.retry_statuses
    return False  # CancelledError, our other errors, and bugs


def retry_wait(
    policy: RetryPolicy, error: BaseException | None, retry_number: int, rng: random.Random
) -> float:
    """The wait before retry ``retry_number`` after ``error``: the server's hint, else backoff.

    A 429 without a hint is backed off from ``wait_throttled``, every other
    failure from ``wait_initial``.
    """
    hint = getattr(error, "retry_after", None)
    if hint is not None:
        return float(hint)
    wait = policy.backoff(retry_number, throttled=isinstance(error, RateLimitError))
    if policy.wait_jitter:
        wait += rng.uniform(0.0, policy.wait_jitter)
    return wait


class _HintOrBackoff(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return retry_wait(self._policy, error, retry_state.attempt_number, self._rng)


class _StopAtLimits(tenacity.stop.stop_base):
    """Stop after the policy's attempts, or when the next wait would end past its deadline.

    A 429 that said how long to wait does not use up an attempt: only the
    deadline bounds those. The deadline counts from ``started``, before the
    first try, on ``clock``.
    """

    def __init__(
        self, policy: RetryPolicy, started: float, clock: Clock, in_outage: Callable[[], bool]
    ) -> None:
        self._policy = policy
        self._started = started
        self._clock = clock
        self._in_outage = in_outage
        self._free = 0  # failed tries that do not count against the attempts

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        upcoming = retry_state.upcoming_sleep
        if self._in_outage():
            self._free += 1  # the API is down: the next try waits for it, not a backoff
            upcoming = 0.0
        elif isinstance(error, RateLimitError) and error.retry_after is not None:
            self._free += 1  # the server said when: only the deadline bounds these
        if retry_state.attempt_number - self._free >= self._policy.attempts:
            return True
        elapsed = self._clock() - self._started
        return elapsed + upcoming >= self._policy.deadline


_rng = random.Random()


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    endpoint: str,
    job_id: str | None = None,
    on_retry: Callable[[RetryEvent], Awaitable[None]] | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    in_outage: Callable[[], bool] = lambda: False,
) -> T:
    """Await ``attempt()`` until it succeeds or ``policy`` says stop; raise the last error."""
    # Most calls succeed at once: tenacity is only set up after a retryable failure,
    # which it is then shown again as its own first attempt.
    started = clock()
    try:
        return await attempt()
    except FinetuneOpsError as error:
        if policy.attempts == 1 or not is_retryable(error, policy):
            raise
        first_error: FinetuneOpsError | None = error

    async def replay_then_attempt() -> T:
        nonlocal first_error
        if first_error is not None:
            error, first_error = first_error, None
            raise error
        return await attempt()

    async def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        assert outcome is not None
        assert state.next_action is not None
        cause = outcome.exception()
        assert isinstance(cause, FinetuneOpsError)
        event = RetryEvent(
            job_id=job_id,
            endpoint=endpoint,
            attempt=state.attempt_number,
            wait=state.next_action.sleep,
            cause=cause,
        )
        logger.info(
            "retrying %s%s after try %d failed (%s); waiting %.3fs",
            endpoint,
            f" for {job_id}" if job_id else "",
            event.attempt,
            type(cause).__name__,
            event.wait,
        )
        if on_retry is not None:
            await on_retry(event)

    retryer = tenacity.AsyncRetrying(
        stop=_StopAtLimits(policy, started, clock, in_outage),
        wait=_HintOrBackoff(policy, _rng),
        retry=tenacity.retry_if_exception(lambda error: is_retryable(error, policy)),
        before_sleep=before_sleep,
        reraise=True,
        sleep=sleep,
    )
    return await retryer(replay_then_attempt)
