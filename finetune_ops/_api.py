"""The HTTP layer: one call per fine-tunes endpoint, each retried under a RetryPolicy.

This is the only module that talks to aiohttp. Everything aiohttp, JSON or
cattrs can raise is translated here into the error tree of ``_errors``, raised
from the original, and every attempt passes through the manager-wide
:class:`RequestGate` and the concurrency limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar, cast

import aiohttp

from ._converter import (
    STRUCTURE_ERRORS,
    describe_error,
    structure_events,
    structure_job,
    structure_jobs,
)
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    FinetuneOpsError,
    InvalidResponseError,
    RateLimitError,
    status_error,
)
from ._gate import RequestGate
from ._hints import retry_hint, should_retry_hint
from ._ids import check_job_id
from ._policies import DEFAULT_RETRY, DEFAULT_TIMEOUTS, RetryPolicy, Timeouts
from ._records import FineTuneEvent, FineTuneJob
from ._retry import RetryEvent, Sleep, retrying
from ._settings import resolve_api_key, resolve_base_url

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_MAX_LIST_BODY_SIZE", "CallState", "FineTunesAPI"]

logger = logging.getLogger("finetune_ops")
T = TypeVar("T")

#: Cap on one response body; the list of every job of an account gets a larger one.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_LIST_BODY_SIZE = 1024 * 1024 * 1024
_EXCERPT = 200

try:
    _USER_AGENT = f"finetune-ops/{version('finetune-ops')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _USER_AGENT = "finetune-ops"


class CallState:
    """One logical call across its retries: the attempts it made, and a way to halt it.

    ``halt``, when given, is asked before every attempt; an error it returns is
    raised instead of sending (a batch uses it to stop after a 401 or 403).
    """

    __slots__ = ("attempts", "halt")

    def __init__(self, halt: Callable[[], FinetuneOpsError | None] | None = None) -> None:
        self.attempts = 0
        self.halt = halt


def _excerpt(body: bytes | bytearray | str) -> str:
    text = body[:_EXCERPT]
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())


def _request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("request-id")


def _parse_changes(
    text: str, known: Mapping[str, str | None]
) -> tuple[dict[str, FineTuneJob | InvalidResponseError], set[str]]:
    """Parse a job list, structuring only the ``known`` jobs whose status moved."""
    changed: dict[str, FineTuneJob | InvalidResponseError] = {}
    mentioned: set[str] = set()

    def job_or_drop(obj: dict[str, Any]) -> dict[str, Any] | None:
        # Called for each object, innermost first: only jobs have both keys.
        if "status" not in obj or "id" not in obj:
            return obj
        job_id = obj["id"]
        if isinstance(job_id, str) and job_id in known:
            mentioned.add(job_id)
            if obj["status"] != known[job_id]:
                try:
                    changed[job_id] = structure_job(obj)
                except STRUCTURE_ERRORS as error:
                    changed[job_id] = InvalidResponseError(
                        f"GET /fine-tunes: the entry for {job_id} is malformed: "
                        f"{describe_error(error)}",
                        status_code=200,
                    )
        return None

    data = json.loads(text, object_hook=job_or_drop)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("expected an object with a 'data' list of jobs")
    return changed, mentioned


async def _read(response: aiohttp.ClientResponse, method: str, url: str, limit: int) -> bytearray:
    """The whole body, refused as soon as it is known to exceed ``limit`` bytes.

    A body of known length is copied once into a buffer of that size, rather
    than collected in pieces and joined, which would briefly need twice its size.
    """

    def too_big(size: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{method} {url}: response body {size} exceeds the {limit} byte cap",
            status_code=response.status,
            request_id=_request_id(response.headers),
            method=method,
            url=url,
        )

    length = response.content_length
    if length is not None and length > limit:
        raise too_big(f"of {length} bytes")
    body = bytearray(length or 0)
    size = 0
    async for chunk in response.content.iter_any():
        end = size + len(chunk)
        if end > limit:
            raise too_big("without a declared length" if length is None else "longer than declared")
        if end <= len(body):
            body[size:end] = chunk
        else:
            body += chunk
        size = end
    del body[size:]
    return body


def _decode(
    payload: bytearray,
    loads: Callable[[str], Any],
    status: int,
    headers: Mapping[str, str],
    method: str,
    url: str,
) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        problem, excerpt = "a body that is not UTF-8 text", _excerpt(payload)
    else:
        # Only the text is needed from here on: a 100 MB job list gives its bytes
        # back before parsing instead of holding both.
        payload.clear()
        excerpt = _excerpt(text)
        if not text or text.isspace():
            problem = "an empty body"
        else:
            try:
                return loads(text)
            except json.JSONDecodeError:
                kind = headers.get("Content-Type", "").split(";")[0] or "no content type"
                problem = f"a body that is not valid JSON ({kind})"
            except ValueError as error:  # valid JSON of the wrong shape
                problem = f"JSON of the wrong shape: {error}"
    raise InvalidResponseError(
        f"{method} {url}: HTTP {status} with {problem}",
        status_code=status,
        excerpt=excerpt,
        request_id=_request_id(headers),
        method=method,
        url=url,
    )


class FineTunesAPI:
    """Async calls to the fine-tunes endpoints over one aiohttp session.

    The session is the caller's (never closed here) or one of its own, created
    on first use and closed by :meth:`aclose`. ``max_concurrency`` caps HTTP
    requests in flight; the gate paces them and holds them during a shared
    rate-limit pause.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_concurrency: int = 32,
        max_requests_per_second: float | None = None,
        allow_insecure_http: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_list_body_size: int = DEFAULT_MAX_LIST_BODY_SIZE,
        on_retry: Callable[[RetryEvent], Awaitable[None]] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError("max_concurrency must be an int")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_body_size < 1 or max_list_body_size < 1:
            raise ValueError("body size caps must be >= 1 byte")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError("session must be an aiohttp.ClientSession")
        self.base_url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.retry = retry
        self.timeouts = timeouts
        self.max_concurrency = max_concurrency
        self.gate = RequestGate(max_requests_per_second, sleep=sleep)
        self._key = resolve_api_key(api_key)
        self._headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        if self._key is not None:
            self._headers["Authorization"] = f"Bearer {self._key.reveal()}"
        self._session = session
        self._owns_session = session is None
        self._slots = asyncio.Semaphore(max_concurrency)
        self._client_timeout = aiohttp.ClientTimeout(
            total=timeouts.request, connect=timeouts.connect
        )
        self._max_body_size = max_body_size
        self._max_list_body_size = max_list_body_size
        self._on_retry = on_retry
        self._sleep = sleep
        self._closed = False

    def __repr__(self) -> str:
        return f"FineTunesAPI(base_url={self.base_url!r}, max_concurrency={self.max_concurrency})"

    @property
    def has_api_key(self) -> bool:
        return self._key is not None

    # -- the endpoints -------------------------------------------------------

    async def cancel(self, job_id: str, *, call: CallState | None = None) -> FineTuneJob:
        """POST /fine-tunes/{id}/cancel: the job as the API left it (truncated record)."""
        path = f"/fine-tunes/{check_job_id(job_id)}/cancel"
        data = await self._request("POST", path, "cancel", job_id, call)
        return self._structure(structure_job, data, path)

    async def retrieve(self, job_id: str, *, call: CallState | None = None) -> FineTuneJob:
        """GET /fine-tunes/{id}: the full job record."""
        path = f"/fine-tunes/{check_job_id(job_id)}"
        data = await self._request("GET", path, "retrieve", job_id, call)
        return self._structure(structure_job, data, path)

    async def list_changes(
        self, known: Mapping[str, str | None], *, call: CallState | None = None
    ) -> tuple[dict[str, FineTuneJob | InvalidResponseError], set[str]]:
        """GET /fine-tunes for polling: what changed among the ``known`` jobs.

        ``known`` maps the ids being watched to their last status (None: not
        seen yet). Returns the jobs whose listed status differs, structured (or
        the error that made one unreadable), and the ids the list mentioned at
        all. Every other job is dropped while the body is parsed, so even a
        100,000-job listing is never held in memory as JSON objects.
        """
        return cast(
            tuple[dict[str, FineTuneJob | InvalidResponseError], set[str]],
            await self._request(
                "GET",
                "/fine-tunes",
                "list",
                None,
                call,
                loads=lambda text: _parse_changes(text, known),
                limit=self._max_list_body_size,
            ),
        )

    async def list(self, *, call: CallState | None = None) -> list[FineTuneJob]:
        """GET /fine-tunes: every job of the account (truncated records)."""
        data = await self._request(
            "GET", "/fine-tunes", "list", None, call, limit=self._max_list_body_size
        )
        items = data.get("data") if isinstance(data, dict) else None
        return self._structure(structure_jobs, items, "/fine-tunes")

    async def events(
        self, job_id: str, *, call: CallState | None = None
    ) -> tuple[FineTuneEvent, ...]:
        """GET /fine-tunes/{id}/events: the job's events, oldest first."""
        path = f"/fine-tunes/{check_job_id(job_id)}/events"
        data = await self._request("GET", path, "events", job_id, call)
        items = data.get("data") if isinstance(data, dict) else None
        return self._structure(structure_events, items, path)

    async def create(self, *, model: str, training_file: str, **params: Any) -> FineTuneJob:
        """POST /fine-tunes: start a job (not retried: a lost answer could mean two jobs)."""
        body = {"model": model, "training_file": training_file, **params}
        data = await self._request(
            "POST", "/fine-tunes", "create", None, None, body=body, retry=RetryPolicy.no_retry()
        )
        return self._structure(structure_job, data, "/fine-tunes")

    async def aclose(self) -> None:
        """Close the session if it is ours; the caller's session is left open."""
        self._closed = True
        session, self._session = self._session, None
        if self._owns_session and session is not None:
            await session.close()

    # -- one call, retried ---------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency)
            # trust_env=False: proxy and netrc settings from the environment are ignored.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        endpoint: str,
        job_id: str | None,
        call: CallState | None,
        *,
        body: Any = None,
        retry: RetryPolicy | None = None,
        loads: Callable[[str], Any] = json.loads,
        limit: int | None = None,
    ) -> Any:
        session = self._ensure_session()
        url = self.base_url + path
        limit = limit or self._max_body_size

        async def attempt() -> Any:
            async with self._slots:
                # The gate is passed holding a slot, so that nothing queued on the
                # slots can slip out during a rate-limit pause.
                await self.gate.wait()
                if call is not None:
                    if call.halt is not None and (error := call.halt()) is not None:
                        raise error
                    call.attempts += 1
                return await self._send(session, method, url, body, loads, limit)

        async def on_retry(event: RetryEvent) -> None:
            if isinstance(event.cause, RateLimitError) and event.cause.retry_after is not None:
                # One 429 with a hint pauses the whole manager, capped by the deadline.
                self.gate.pause(min(event.cause.retry_after, self.retry.deadline))
            if self._on_retry is not None:
                await self._on_retry(event)

        return await retrying(
            attempt,
            retry or self.retry,
            endpoint=endpoint,
            job_id=job_id,
            on_retry=on_retry,
            sleep=self._sleep,
        )

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: Any,
        loads: Callable[[str], Any],
        limit: int,
    ) -> Any:
        try:
            async with session.request(
                method,
                url,
                headers=self._headers,
                json=body,
                allow_redirects=False,  # never carry the key to another place
                timeout=self._client_timeout,
            ) as response:
                payload = await _read(response, method, url, limit)
                status = response.status
                headers = response.headers
        except TimeoutError as error:
            raise APITimeoutError(
                f"{method} {url} timed out after {self.timeouts.request:g}s",
                method=method,
                url=url,
            ) from error
        except aiohttp.ClientResponseError as error:
            # Its repr carries the request headers, the key among them: not chained.
            raise APIConnectionError(
                f"{method} {url} failed: {type(error).__name__} (HTTP {error.status})",
                method=method,
                url=url,
            ) from None
        except aiohttp.ClientError as error:
            raise APIConnectionError(
                f"{method} {url} failed: {type(error).__name__}: {error}", method=method, url=url
            ) from error
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %d", method, url, status)
        if 200 <= status < 300:
            return _decode(payload, loads, status, headers, method, url)
        raise self._status_error(payload, status, headers, method, url)

    def _status_error(
        self, payload: bytearray, status: int, headers: Mapping[str, str], method: str, url: str
    ) -> APIStatusError:
        fields: dict[str, Any] = {}
        try:
            error = json.loads(payload).get("error") if payload else None
        except (UnicodeDecodeError, ValueError, AttributeError):
            error = None
        if isinstance(error, dict):
            for name in ("type", "param", "code"):
                value = error.get(name)
                fields[name] = value if value is None or isinstance(value, str) else str(value)
            message = str(error.get("message") or "no message")
        elif isinstance(error, str):
            message = error
        elif 300 <= status < 400:
            message = f"unexpected redirect to {headers.get('Location', '?')!r}, not followed"
        else:
            message = f"{method} {url} answered without an error object: {_excerpt(payload)!r}"
        if status == 401 and self._key is None:
            message += " (no API key given: pass api_key or set TOGETHER_API_KEY)"
        return status_error(
            status,
            message,
            request_id=_request_id(headers),
            retry_after=retry_hint(headers, time.time()),
            should_retry=should_retry_hint(headers),
            **fields,
        )

    @staticmethod
    def _structure(structure: Callable[[Any], T], data: Any, path: str) -> T:
        try:
            return structure(data)
        except STRUCTURE_ERRORS as error:
            raise InvalidResponseError(
                f"{path}: the response does not have the shape the API documents: "
                f"{describe_error(error)}",
                status_code=200,
                excerpt=_excerpt(json.dumps(data, default=str).encode()),
            ) from error
