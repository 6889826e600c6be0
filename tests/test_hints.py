"""Server wait hints are read leniently: a bad header is ignored, never raised."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict

from finetune_ops._hints import retry_hint, should_retry_hint

NOW = 1_800_000_000.0


def hint(**headers: str) -> float | None:
    return retry_hint(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}), NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0", 0.0), ("0.25", 0.25), (" 7 ", 7.0), ("1e3", 1000.0)],
)
def test_retry_after_seconds(value: str, expected: float) -> None:
    """Retry-After in whole or fractional seconds is used as is."""
    assert hint(retry_after=value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-1", "inf", "-inf", "nan", "1e400", "Fri, 01 Jan 100000 00:00:00 GMT", "1,5"],
)
def test_unusable_retry_after_is_ignored(value: str) -> None:
    """Garbage, negative, infinite and overflowing hints give no hint instead of an error."""
    assert hint(retry_after=value) is None


def test_retry_after_http_date() -> None:
    """An HTTP date in the future waits until then; one in the past or now waits nothing."""
    future = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)
    present = format_datetime(datetime.fromtimestamp(NOW, UTC), usegmt=True)
    assert hint(retry_after=future) == pytest.approx(30.0)
    assert hint(retry_after=past) == 0.0
    assert hint(retry_after=present) == 0.0


def test_far_future_date_is_large_but_finite() -> None:
    """A date in the year 9999 is a very long wait, which the deadline then refuses."""
    value = hint(retry_after="Fri, 31 Dec 9999 23:59:59 GMT")
    assert value is not None
    assert value > 1e10


def test_retry_after_ms_wins() -> None:
    """retry-after-ms is the most precise hint and takes precedence."""
    assert hint(retry_after_ms="250", retry_after="9") == 0.25


def test_bad_retry_after_ms_falls_back() -> None:
    """An unusable retry-after-ms falls back to Retry-After."""
    assert hint(retry_after_ms="nope", retry_after="3") == 3.0


def test_ratelimit_reset_seconds_and_epoch() -> None:
    """x-ratelimit-reset is read as seconds, or as a Unix time when it is that large."""
    assert hint(x_ratelimit_reset="4") == 4.0
    assert hint(x_ratelimit_reset=str(NOW + 5)) == pytest.approx(5.0)
    assert hint(x_ratelimit_reset=str(NOW - 5)) == 0.0


def test_no_hint() -> None:
    """No header, no hint."""
    assert hint() is None


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("FALSE", False), ("maybe", None), (None, None)]
)
def test_should_retry(value: str | None, expected: bool | None) -> None:
    """x-should-retry is honoured when it says true or false, ignored otherwise."""
    headers = CIMultiDict() if value is None else CIMultiDict({"x-should-retry": value})
    assert should_retry_hint(headers) is expected


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2037 07:28:00", "Wed, 21 Oct 2037 07:28:00 -0000"])
def test_http_date_without_a_zone_is_ignored(value: str) -> None:
    """An HTTP date must be GMT: one without a usable zone gives no hint."""
    assert hint(retry_after=value) is None
