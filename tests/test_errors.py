"""The error tree: shape, builtin bases, readable messages, pickling."""

from __future__ import annotations

import pickle

import pytest

from finetune_ops import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FinetuneOpsError,
    InternalServerError,
    InvalidJobIdError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from finetune_ops._errors import status_error


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (599, InternalServerError),
        (418, APIStatusError),
        (302, APIStatusError),
    ],
)
def test_status_error_classes(status: int, cls: type[APIStatusError]) -> None:
    """Each status family gets its own class, all under APIStatusError."""
    error = status_error(status, "no", type="t", request_id="r1")
    assert type(error) is cls
    assert error.status_code == status
    assert error.request_id == "r1"
    assert isinstance(error, FinetuneOpsError)


def test_builtin_bases() -> None:
    """Timeouts are TimeoutErrors and a bad id is a ValueError, as users would expect."""
    assert issubclass(APITimeoutError, TimeoutError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(WaitTimeoutError, TimeoutError)
    assert issubclass(InvalidJobIdError, ValueError)
    assert issubclass(InvalidResponseError, APIConnectionError)
    assert not issubclass(RuntimeError, FinetuneOpsError)


def test_messages() -> None:
    """str() is one readable line; repr() names the class and the key fields."""
    error = status_error(404, "Job not found", type="not_found_error", request_id="abc")
    assert str(error) == "HTTP 404 (not_found_error): Job not found"
    assert repr(error) == (
        "NotFoundError('Job not found', status_code=404, type='not_found_error', request_id='abc')"
    )
    bad = InvalidResponseError("bad body", status_code=502, excerpt="<html>")
    assert "excerpt='<html>'" in repr(bad)


def test_rate_limit_carries_hint() -> None:
    """A 429 keeps the server's hint."""
    error = status_error(429, "slow down", retry_after=1.5)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 1.5


@pytest.mark.parametrize(
    "error",
    [
        status_error(429, "slow", retry_after=2.0, type="rate_limit"),
        APITimeoutError("late", method="GET", url="http://x/v1"),
        InvalidResponseError("bad", status_code=200, excerpt="{"),
        InvalidJobIdError("bad id", job_id="ft-../x"),
        WaitTimeoutError("not yet", job_id="ft-a"),
    ],
)
def test_errors_pickle(error: FinetuneOpsError) -> None:
    """Errors survive pickling (for process pools and task queues) with their fields."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)
