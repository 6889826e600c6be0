"""Policies are frozen values with documented defaults and checked fields."""

from __future__ import annotations

import math
from datetime import timedelta

import attrs
import pytest

from finetune_ops import PollPolicy, RetryPolicy, Timeouts


def test_defaults() -> None:
    """The documented defaults."""
    retry = RetryPolicy()
    assert (retry.attempts, retry.deadline, retry.wait_initial, retry.wait_max) == (6, 60, 0.05, 8)
    assert (retry.wait_throttled, retry.wait_exp_base, retry.wait_jitter) == (1, 2, 0.05)
    assert retry.retry_statuses == {408, 409, 429, 500, 502, 503, 504}
    poll = PollPolicy()
    assert (poll.interval, poll.growth, poll.max_interval, poll.timeout) == (1, 1.5, 30, 600)
    assert Timeouts() == Timeouts(connect=5.0, request=30.0)


def test_compact_repr() -> None:
    """Statuses show sorted, so reprs are stable."""
    assert "retry_statuses={408, 409, 429, 500, 502, 503, 504}" in repr(RetryPolicy())


def test_frozen_and_evolve() -> None:
    """Policies cannot be changed in place; evolve makes a changed copy."""
    retry = RetryPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        retry.attempts = 2  # type: ignore[misc]
    assert attrs.evolve(retry, attempts=2).attempts == 2


def test_timedelta_accepted() -> None:
    """Durations may be given as timedeltas."""
    assert Timeouts(request=timedelta(minutes=1)).request == 60.0
    assert PollPolicy(timeout=timedelta(hours=1)).timeout == 3600.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: RetryPolicy(attempts=0),
        lambda: RetryPolicy(deadline=0),
        lambda: RetryPolicy(wait_initial=-1),
        lambda: RetryPolicy(wait_max=math.nan),
        lambda: PollPolicy(interval=0),
        lambda: PollPolicy(growth=0.5),
        lambda: PollPolicy(jitter=2),
        lambda: Timeouts(connect=-1),
    ],
)
def test_bad_values_refused(make: object) -> None:
    """Nonsense values fail at construction with ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011
        make()  # type: ignore[operator]


def test_bad_types_refused() -> None:
    """A duration must be a number or a timedelta."""
    with pytest.raises(TypeError):
        Timeouts(request="30")  # type: ignore[arg-type]


def test_backoff_and_poll_delay_are_capped() -> None:
    """Backoff and poll intervals grow geometrically up to their caps, even after many tries."""
    retry = RetryPolicy(wait_initial=0.5, wait_max=8)
    assert [retry.backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 8, 8]
    assert retry.backoff(10_000) == 8
    assert retry.backoff(10_000, throttled=True) == 8
    poll = PollPolicy(interval=1, growth=2, max_interval=5)
    assert [poll.delay(n) for n in (0, 1, 2, 3)] == [1, 2, 4, 5]
    assert poll.delay(10_000) == 5


def test_a_429_without_a_hint_backs_off_longer() -> None:
    """A transient failure is tried again within 0.1 s; a request to slow down, after 1 s."""
    retry = RetryPolicy()
    assert [retry.backoff(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert [retry.backoff(n, throttled=True) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
