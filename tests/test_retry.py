"""Retrying under a RetryPolicy, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from _clock import FakeClock

from finetune_ops import (
    APIConnectionError,
    APITimeoutError,
    FinetuneOpsError,
    InvalidResponseError,
    RateLimitError,
    RetryPolicy,
)
from finetune_ops._errors import status_error
from finetune_ops._retry import RetryEvent, is_retryable, retrying

NO_JITTER = RetryPolicy(wait_jitter=0)


class Script:
    """An attempt function that raises the scripted errors, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (APIConnectionError("reset"), True),
        (APITimeoutError("late"), True),
        (InvalidResponseError("truncated"), True),
        (status_error(408, "x"), True),
        (status_error(409, "x"), True),
        (status_error(429, "x"), True),
        (status_error(500, "x"), True),
        (status_error(502, "x"), True),
        (status_error(503, "x"), True),
        (status_error(504, "x"), True),
        (status_error(400, "x"), False),
        (status_error(401, "x"), False),
        (status_error(403, "x"), False),
        (status_error(404, "x"), False),
        (status_error(422, "x"), False),
        (status_error(501, "x"), False),
        (status_error(500, "x", should_retry=False), False),
        (status_error(400, "x", should_retry=True), True),
        (asyncio.CancelledError(), False),
        (KeyError("bug"), False),
    ],
)
def test_what_is_retried(error: BaseException, expected: bool) -> None:
    """The documented retry set, x-should-retry honoured, CancelledError and bugs never."""
    assert is_retryable(error, RetryPolicy()) is expected


async def test_backoff_then_success() -> None:
    """Transient failures are retried with exponential waits until the call succeeds."""
    attempt = Script(status_error(503, "busy"), APIConnectionError("reset"))
    sleeps = Sleeps()
    events: list[RetryEvent] = []

    async def on_retry(event: RetryEvent) -> None:
        events.append(event)

    result = await retrying(
        attempt, NO_JITTER, endpoint="cancel", job_id="ft-a", on_retry=on_retry, sleep=sleeps
    )
    assert result == "ok"
    assert attempt.calls == 3
    assert sleeps.waits == [0.05, 0.1]
    assert [(e.attempt, e.wait, type(e.cause).__name__) for e in events] == [
        (1, 0.05, "InternalServerError"),
        (2, 0.1, "APIConnectionError"),
    ]
    assert events[0].job_id == "ft-a"


async def test_jitter_is_bounded() -> None:
    """Jitter adds at most wait_jitter seconds."""
    attempt = Script(*(status_error(500, "x") for _ in range(5)))
    sleeps = Sleeps()
    await retrying(attempt, RetryPolicy(wait_jitter=0.25), endpoint="list", sleep=sleeps)
    for wait, base in zip(sleeps.waits, [0.05, 0.1, 0.2, 0.4, 0.8], strict=True):
        assert base <= wait <= base + 0.25


async def test_gives_up_after_attempts() -> None:
    """After the last attempt the last error is raised as is, not wrapped."""
    last = status_error(502, "last")
    attempt = Script(status_error(500, "first"), status_error(503, "second"), last)
    with pytest.raises(FinetuneOpsError) as info:
        await retrying(attempt, RetryPolicy(attempts=3), endpoint="x", sleep=Sleeps())
    assert info.value is last
    assert attempt.calls == 3


async def test_not_retried_errors_raise_at_once() -> None:
    """A 404 is final."""
    attempt = Script(status_error(404, "gone"))
    sleeps = Sleeps()
    with pytest.raises(FinetuneOpsError, match="gone"):
        await retrying(attempt, RetryPolicy(), endpoint="x", sleep=sleeps)
    assert attempt.calls == 1
    assert sleeps.waits == []


async def test_server_hint_replaces_backoff() -> None:
    """A Retry-After hint is the wait, whatever the backoff would have been."""
    attempt = Script(status_error(429, "slow", retry_after=3.0), status_error(503, "x"))
    sleeps = Sleeps()
    await retrying(attempt, NO_JITTER, endpoint="x", sleep=sleeps)
    assert sleeps.waits == [3.0, 0.1]


async def test_a_429_without_a_hint_waits_longer_than_a_503() -> None:
    """A request to slow down that says not for how long backs off from wait_throttled."""
    attempt = Script(status_error(503, "x"), status_error(429, "slow"), status_error(500, "x"))
    sleeps = Sleeps()
    await retrying(attempt, NO_JITTER, endpoint="cancel", sleep=sleeps)
    assert sleeps.waits == [0.05, 2.0, 0.2]  # the second retry: wait_throttled * 2


async def test_hint_beyond_deadline_surfaces_rate_limit() -> None:
    """A hint longer than the deadline allows raises RateLimitError at once, with the hint."""
    attempt = Script(status_error(429, "slow", retry_after=120.0))
    sleeps = Sleeps()
    with pytest.raises(RateLimitError) as info:
        await retrying(attempt, RetryPolicy(deadline=60), endpoint="x", sleep=sleeps)
    assert info.value.retry_after == 120.0
    assert attempt.calls == 1
    assert sleeps.waits == []


async def test_huge_hint_does_not_overflow() -> None:
    """A hint from the year 9999 is refused by the deadline, not by an overflow."""
    attempt = Script(status_error(429, "slow", retry_after=2.5e11))
    with pytest.raises(RateLimitError):
        await retrying(attempt, RetryPolicy(), endpoint="x", sleep=Sleeps())


async def test_cancelled_error_is_never_retried() -> None:
    """CancelledError from an attempt propagates at once."""
    attempt = Script(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retrying(attempt, RetryPolicy(), endpoint="x", sleep=Sleeps())
    assert attempt.calls == 1


async def test_cancel_during_backoff_sleep_stops_at_once() -> None:
    """Cancelling the caller during a long wait ends it and sends nothing more."""
    attempt = Script(status_error(429, "slow", retry_after=30.0))
    task = asyncio.create_task(retrying(attempt, RetryPolicy(), endpoint="x"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert attempt.calls == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempt.calls == 1


async def test_deadline_counts_the_first_attempt() -> None:
    """The retry deadline runs from before the first try, so a slow first try uses it up."""
    clock = FakeClock()

    async def slow_failure() -> str:
        clock.now += 50.0  # the first try alone takes 50 of the 60 seconds
        raise APIConnectionError("reset")

    policy = RetryPolicy(deadline=60, wait_initial=20, wait_max=20, wait_jitter=0)
    with pytest.raises(APIConnectionError):
        await retrying(slow_failure, policy, endpoint="cancel", sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []  # 50 s gone + 20 s of backoff would end past the deadline


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidResponseError("cut short"), True),
        (InvalidResponseError("over the cap", transient=False), False),
        (InvalidResponseError("wrong shape", transient=False), False),
    ],
)
def test_only_answers_that_can_change_are_retried(error: BaseException, expected: bool) -> None:
    """A body cut short is retried; a body over the cap or of the wrong shape is not."""
    assert is_retryable(error, RetryPolicy()) is expected


async def test_a_hinted_429_does_not_use_up_an_attempt() -> None:
    """429s that say when to come back are retried until the deadline, not the attempts."""
    hinted = [status_error(429, "slow down", retry_after=0.1) for _ in range(10)]
    attempt = Script(*hinted, status_error(503, "x"), status_error(503, "x"))
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, deadline=60, wait_jitter=0)
    assert (
        await retrying(attempt, policy, endpoint="cancel", sleep=clock.sleep, clock=clock) == "ok"
    )
    assert attempt.calls == 13  # ten free tries, then three counted ones

    unhinted = Script(*[status_error(429, "slow down") for _ in range(3)])
    with pytest.raises(RateLimitError):
        await retrying(unhinted, policy, endpoint="cancel", sleep=clock.sleep, clock=clock)
    assert unhinted.calls == 3
