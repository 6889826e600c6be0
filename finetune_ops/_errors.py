"""The errors finetune_ops raises.

One root, split by whether a usable answer came back::

    FinetuneOpsError
    ├── APIConnectionError            no usable response: the request may or may not have landed
    │   ├── APITimeoutError           ... in time (also a TimeoutError)
    │   └── InvalidResponseError      ... that could be read: not JSON, HTML, empty, truncated
    ├── APIStatusError                the API answered with an error status
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   ├── UnprocessableEntityError  422
    │   ├── RateLimitError            429, with ``retry_after``
    │   └── InternalServerError       5xx
    ├── WaitTimeoutError              a job did not end as asked in time (also a TimeoutError)
    ├── ActiveJobError                a job was not deleted: it has not ended
    └── InvalidJobIdError             a job id was refused before any request (also a ValueError)

Errors carry plain values only (never aiohttp objects, whose repr includes the
``Authorization`` header), so neither ``str()`` nor ``repr()`` can leak the key.
Misuse, such as a closed manager used again, raises a plain ``RuntimeError``
outside this tree so that ``except FinetuneOpsError`` never hides a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._records import FineTuneJob

__all__ = [
    "APIConnectionError",
    "ActiveJobError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "FinetuneOpsError",
    "InternalServerError",
    "InvalidJobIdError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
    "WaitTimeoutError",
    "error_from_json",
    "error_to_json",
    "status_error",
]


class FinetuneOpsError(Exception):
    """Root of every error finetune_ops raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors would break the default pickling.
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[FinetuneOpsError], state: dict[str, object]) -> FinetuneOpsError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class APIConnectionError(FinetuneOpsError):
    """No usable response: the connection failed, timed out, or the body was unreadable.

    The request may still have reached the server.
    """

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class APITimeoutError(APIConnectionError, TimeoutError):
    """The request did not complete within its timeout."""


class InvalidResponseError(APIConnectionError):
    """A response came back but its body was not the JSON the API promises.

    ``transient`` says whether asking again could give another answer: true for
    a body cut short, empty, not JSON or an HTML page from a proxy; false for a
    body over the size cap or JSON of another shape, which a retry would only
    fetch again. ``status_code`` is the answer's status: a 2xx means the server
    did what was asked even though its answer could not be read.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        excerpt: str = "",
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        transient: bool = True,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.status_code = status_code
        self.excerpt = excerpt
        self.request_id = request_id
        self.transient = transient

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"excerpt={self.excerpt!r})"
        )


class APIStatusError(FinetuneOpsError):
    """The API answered with an error status; its error body is kept field by field.

    ``retry_after`` is the server's wait hint in seconds, when it gave a usable
    one; ``should_retry`` its ``x-should-retry`` verdict, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type
        self.param = param
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.should_retry = should_retry

    def __str__(self) -> str:
        detail = f" ({self.type})" if self.type else ""
        return f"HTTP {self.status_code}{detail}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"type={self.type!r}, request_id={self.request_id!r})"
        )


class BadRequestError(APIStatusError):
    """400: the request was refused, for example cancelling a job that already ended."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not act on this resource."""


class NotFoundError(APIStatusError):
    """404: no such job."""


class ConflictError(APIStatusError):
    """409: the job changed underneath the request; retried by default."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was understood but not valid."""


class RateLimitError(APIStatusError):
    """429: too many requests; ``retry_after`` says for how long, when the server said."""


class InternalServerError(APIStatusError):
    """5xx: the server failed; retried by default."""


class WaitTimeoutError(FinetuneOpsError, TimeoutError):
    """The call's deadline passed before a job ended as asked.

    ``job`` is the last record seen (``None`` if the job was never seen).
    ``cancel_in_doubt`` is true when a cancel request had been sent but not
    answered: it may have reached the server, and the job may be stopping.
    ``__cause__`` is the last error met while watching the job, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        job: FineTuneJob | None = None,
        cancel_in_doubt: bool = False,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.job = job
        self.cancel_in_doubt = cancel_in_doubt


class ActiveJobError(FinetuneOpsError):
    """A job was not deleted because it has not ended; ``job`` is its record.

    Refused before any delete request: pass ``cancel_first=True`` to cancel it,
    wait until it is terminal, then delete it.
    """

    def __init__(self, message: str, *, job_id: str, job: FineTuneJob | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.job = job


class InvalidJobIdError(FinetuneOpsError, ValueError):
    """A job id was refused before it could reach a URL."""

    def __init__(self, message: str, *, job_id: object) -> None:
        super().__init__(message)
        self.job_id = job_id


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(
    status_code: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
    should_retry: bool | None = None,
) -> APIStatusError:
    """Build the error class that matches an HTTP status."""
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = InternalServerError if status_code >= 500 else APIStatusError
    return cls(
        message,
        status_code=status_code,
        type=type,
        param=param,
        code=code,
        request_id=request_id,
        retry_after=retry_after,
        should_retry=should_retry,
    )


def error_to_json(error: FinetuneOpsError) -> dict[str, object]:
    """The plain JSON form of an error: its class name, message and HTTP status."""
    return {
        "type": type(error).__name__,
        "message": error.message,
        "status_code": getattr(error, "status_code", None),
    }


def error_from_json(data: object, *, job_id: str) -> FinetuneOpsError:
    """An error rebuilt from :func:`error_to_json`, as the class it names where known."""
    fields = data if isinstance(data, dict) else {}
    name = fields.get("type")
    message = str(fields.get("message") or name or "error")
    status = fields.get("status_code")
    cls = next((cls for cls in _error_classes() if cls.__name__ == name), FinetuneOpsError)
    if issubclass(cls, APIStatusError):
        return cls(message, status_code=status if isinstance(status, int) else 0)
    if issubclass(cls, InvalidResponseError):
        return cls(message, status_code=status if isinstance(status, int) else None)
    if issubclass(cls, WaitTimeoutError | InvalidJobIdError | ActiveJobError):
        return cls(message, job_id=job_id)
    if issubclass(cls, APIConnectionError):
        return cls(message)
    return FinetuneOpsError(message)


def _error_classes() -> list[type[FinetuneOpsError]]:
    found: list[type[FinetuneOpsError]] = []
    stack: list[type[FinetuneOpsError]] = [FinetuneOpsError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found
