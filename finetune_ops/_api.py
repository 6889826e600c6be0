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
from typing import Any, TypeVar

import aiohttp

from ._converter import STRUCTURE_ERRORS, describe_error, structure_events, structure_job
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
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

__all__ = ["DEFAULT_MAX_BODY_SIZE", "CallStats", "FineTunesAPI"]

logger = logging.getLogger("finetune_ops")
T = TypeVar("T")

DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
_EXCERPT = 200

try:
    _USER_AGENT = f"finetune-ops/{version('finetune-ops')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _USER_AGENT = "finetune-ops"


class CallStats:
    """Counts the HTTP attempts one logical call made, retries included."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


def _excerpt(body: bytes) -> str:
    text = body[:_EXCERPT].decode("utf-8", "replace")
    return " ".join(text.split())


def _request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("request-id")


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
        on_retry: Callable[[RetryEvent], Awaitable[None]] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError("max_concurrency must be an int")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_body_size < 1:
            raise ValueError(f"max_body_size must be >= 1, got {max_body_size}")
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
        self._on_retry = on_retry
        self._sleep = sleep
        self._closed = False

    def __repr__(self) -> str:
        return f"FineTunesAPI(base_url={self.base_url!r}, max_concurrency={self.max_concurrency})"

    @property
    def has_api_key(self) -> bool:
        return self._key is not None

    # -- the endpoints -------------------------------------------------------

    async def cancel(self, job_id: str, *, stats: CallStats | None = None) -> FineTuneJob:
        """POST /fine-tunes/{id}/cancel: the job as the API left it (truncated record)."""
        path = f"/fine-tunes/{check_job_id(job_id)}/cancel"
        data = await self._call("POST", path, "cancel", job_id, stats)
        return self._structure(structure_job, data, path)

    async def retrieve(self, job_id: str, *, stats: CallStats | None = None) -> FineTuneJob:
        """GET /fine-tunes/{id}: the full job record."""
        path = f"/fine-tunes/{check_job_id(job_id)}"
        data = await self._call("GET", path, "retrieve", job_id, stats)
        return self._structure(structure_job, data, path)

    async def list_raw(self, *, stats: CallStats | None = None) -> list[dict[str, Any]]:
        """GET /fine-tunes, unstructured: the account's jobs as JSON objects.

        Batched polling picks the few it needs out of thousands, so structuring
        is left to the caller.
        """
        data = await self._call("GET", "/fine-tunes", "list", None, stats)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise InvalidResponseError(
                "GET /fine-tunes: expected an object with a 'data' list of jobs",
                status_code=200,
                excerpt=_excerpt(json.dumps(data)[:_EXCERPT].encode()),
            )
        return items

    async def list(self, *, stats: CallStats | None = None) -> list[FineTuneJob]:
        """GET /fine-tunes: every job of the account (truncated records)."""
        items = await self.list_raw(stats=stats)
        return [self._structure(structure_job, item, "/fine-tunes") for item in items]

    async def events(
        self, job_id: str, *, stats: CallStats | None = None
    ) -> tuple[FineTuneEvent, ...]:
        """GET /fine-tunes/{id}/events: the job's events, oldest first."""
        path = f"/fine-tunes/{check_job_id(job_id)}/events"
        data = await self._call("GET", path, "events", job_id, stats)
        items = data.get("data") if isinstance(data, dict) else None
        return self._structure(structure_events, items, path)

    async def create(self, *, model: str, training_file: str, **params: Any) -> FineTuneJob:
        """POST /fine-tunes: start a job (not retried: a lost answer could mean two jobs)."""
        body = {"model": model, "training_file": training_file, **params}
        data = await self._call(
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

    async def _call(
        self,
        method: str,
        path: str,
        endpoint: str,
        job_id: str | None,
        stats: CallStats | None,
        *,
        body: Any = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        session = self._ensure_session()
        url = self.base_url + path

        async def attempt() -> Any:
            async with self._slots:
                # The gate is passed holding a slot, so that nothing queued on the
                # slots can slip out during a rate-limit pause.
                await self.gate.wait()
                if stats is not None:
                    stats.attempts += 1
                return await self._send(session, method, url, body)

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

    async def _send(self, session: aiohttp.ClientSession, method: str, url: str, body: Any) -> Any:
        try:
            async with session.request(
                method,
                url,
                headers=self._headers,
                json=body,
                allow_redirects=False,  # never carry the key to another place
                timeout=self._client_timeout,
            ) as response:
                payload = await self._read(response, method, url)
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
            return self._decode(payload, status, headers, method, url)
        raise self._status_error(payload, status, headers, method, url)

    async def _read(self, response: aiohttp.ClientResponse, method: str, url: str) -> bytes:
        limit = self._max_body_size
        length = response.content_length
        if length is not None and length > limit:
            raise InvalidResponseError(
                f"{method} {url}: response body of {length} bytes exceeds the {limit} byte cap",
                status_code=response.status,
                request_id=_request_id(response.headers),
                method=method,
                url=url,
            )
        if length is not None:
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise InvalidResponseError(
                    f"{method} {url}: response body exceeds the {limit} byte cap",
                    status_code=response.status,
                    request_id=_request_id(response.headers),
                    method=method,
                    url=url,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _decode(
        payload: bytes, status: int, headers: Mapping[str, str], method: str, url: str
    ) -> Any:
        problem = "an empty body" if not payload.strip() else None
        if problem is None:
            try:
                return json.loads(payload)
            except (UnicodeDecodeError, ValueError):
                kind = headers.get("Content-Type", "").split(";")[0] or "no content type"
                problem = f"a body that is not valid JSON ({kind})"
        raise InvalidResponseError(
            f"{method} {url}: HTTP {status} with {problem}",
            status_code=status,
            excerpt=_excerpt(payload),
            request_id=_request_id(headers),
            method=method,
            url=url,
        )

    def _status_error(
        self, payload: bytes, status: int, headers: Mapping[str, str], method: str, url: str
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
