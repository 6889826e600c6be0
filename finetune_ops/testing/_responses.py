"""What errors and injected faults look like on the wire."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

from ._faults import FaultKind

JSON_TYPE = "application/json"


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """The API's error object: {"error": {"message", "type", "param", "code"}}."""
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def json_response(status: int, body: bytes | str) -> web.Response:
    """A JSON response from already serialised text."""
    data = body.encode() if isinstance(body, str) else body
    return web.Response(status=status, body=data, content_type=JSON_TYPE)


def error_response(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    """An error in the API's JSON shape."""
    return json_response(status, error_body(message, error_type, param=param, code=code))


def format_seconds(seconds: float) -> str:
    """Seconds as a plain decimal with at most millisecond precision: 0.05 -> "0.05"."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def http_date_after(seconds: float) -> str:
    """An IMF-fixdate at least `seconds` from now in real wall time.

    HTTP dates have one-second resolution, so the instant is rounded up: a
    client that waits until that date never retries early.
    """
    moment = datetime.fromtimestamp(math.ceil(time.time() + seconds), UTC)
    return format_datetime(moment, usegmt=True)


_HTML_PAGE = b"""<!DOCTYPE html>
<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>simulated edge proxy</center>
</body>
</html>
"""

_RATE_LIMITED = "Rate limit reached for fine-tuning requests; slow down and retry later."


def fault_response(kind: FaultKind, retry_after: float) -> web.Response:
    """The response a fault that strikes before the handler sends in its place."""
    if kind is FaultKind.RATE_LIMIT_SECONDS:
        response = _rate_limited()
        response.headers["Retry-After"] = format_seconds(retry_after)
    elif kind is FaultKind.RATE_LIMIT_DATE:
        response = _rate_limited()
        response.headers["Retry-After"] = http_date_after(retry_after)
    elif kind is FaultKind.RATE_LIMIT_MS:
        response = _rate_limited()
        response.headers["retry-after-ms"] = str(max(0, math.ceil(retry_after * 1000)))
    elif kind is FaultKind.RATE_LIMIT_NO_HINT:
        response = _rate_limited()
    elif kind is FaultKind.SERVER_ERROR_500:
        response = error_response(
            500, "The server had an error processing the request.", "server_error"
        )
    elif kind is FaultKind.BAD_GATEWAY_502:
        response = error_response(502, "Bad gateway: the upstream service failed.", "server_error")
    elif kind is FaultKind.UNAVAILABLE_503:
        response = error_response(
            503,
            "The service is temporarily overloaded.",
            "server_error",
            code="service_unavailable",
        )
    elif kind is FaultKind.GATEWAY_TIMEOUT_504:
        response = error_response(
            504, "Gateway timeout: the upstream took too long.", "server_error"
        )
    elif kind is FaultKind.HTML_PAGE:
        response = web.Response(status=502, body=_HTML_PAGE, content_type="text/html")
    elif kind is FaultKind.EMPTY_BODY:
        # Declared JSON but empty, the way a load balancer's bare 503 reaches a client.
        response = web.Response(status=503, body=b"", content_type=JSON_TYPE)
    else:
        raise ValueError(f"{kind} does not answer in place of the handler")
    return response


def _rate_limited() -> web.Response:
    return error_response(429, _RATE_LIMITED, "rate_limit_error", code="rate_limit_exceeded")


def rate_limited(wait: float) -> web.Response:
    """The 429 of the rate limit, hinting the wait until its window resets."""
    response = _rate_limited()
    response.headers["Retry-After"] = format_seconds(wait)
    return response


def short_of_capacity() -> web.Response:
    """The 503 of a service short of capacity while the caller is within its rate."""
    return error_response(
        503,
        "The service is short of capacity right now; retry shortly.",
        "server_error",
        code="service_unavailable",
    )


def truncate(body: bytes) -> bytes:
    """A proper prefix of a JSON document, which is never itself valid JSON here.

    Every body the simulator sends is an object, so any prefix lacks the
    closing brace.
    """
    return body[: max(1, len(body) // 2)]
