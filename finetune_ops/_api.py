"""The HTTP layer: one call per fine-tunes endpoint, each retried under a RetryPolicy.

This is the only module that talks to aiohttp. Everything aiohttp, JSON or
cattrs can raise is translated here into the error tree of ``_errors``, never
chained to the original (aiohttp's exceptions hold the request's headers, the
key among them), and every attempt passes through the manager-wide
:class:`RateGate` and the concurrency limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, Generic, TypeVar

import aiohttp
import attrs

from . import _speedups as speedups
from ._bodies import DEFAULT_MAX_BUFFERED_BYTES, BodyBudget, EmptyBody, read_body, request_id
from ._converter import (
    STRUCTURE_ERRORS,
    brief_job,
    describe_error,
    structure_checkpoints,
    structure_events,
    structure_job,
)
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    FinetuneOpsError,
    InvalidResponseError,
    status_error,
)
from ._gate import RateChanged, RateGate, Ticket
from ._hints import retry_hint, should_retry_hint
from ._ids import check_job_id
from ._listing import ChangesScan, JobsScan, ListMemo, ListScan, TimedChanges
from ._policies import DEFAULT_RETRY, DEFAULT_TIMEOUTS, RetryPolicy, Timeouts
from ._records import FineTuneCheckpoint, FineTuneEvent, FineTuneJob
from ._retry import RetryEvent, Sleep, retrying
from ._settings import resolve_api_key, resolve_base_url

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_BUFFERED_BYTES",
    "DEFAULT_MAX_LIST_BODY_SIZE",
    "REDACTED",
    "CallState",
    "FineTunesAPI",
]

logger = logging.getLogger("finetune_ops")
T = TypeVar("T")

#: What stands in for the API key wherever a server echoed it.
REDACTED = "[redacted]"

#: Cap on one response body; the list of every job of an account gets a larger one.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_LIST_BODY_SIZE = 1024 * 1024 * 1024
_EXCERPT = 200

try:
    _USER_AGENT = f"finetune-ops/{version('finetune-ops')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _USER_AGENT = "finetune-ops"


class CallState:
    """One logical call across its retries: how many HTTP attempts it has made."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


def _excerpt(body: bytes | bytearray | str) -> str:
    text = body[:_EXCERPT]
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())


# -- what each endpoint's body becomes: the only places JSON turns into values ---------


def _events_of(data: object) -> tuple[FineTuneEvent, ...]:
    if type(data) is not dict:
        raise ValueError("expected an object with a 'data' list of events")
    return structure_events(data.get("data"))


def _checkpoints_of(data: object) -> tuple[FineTuneCheckpoint, ...]:
    if type(data) is not dict:
        raise ValueError("expected an object with a 'data' list of checkpoints")
    return structure_checkpoints(data.get("data"))


def _deleted_of(data: object) -> str:
    if type(data) is not dict:
        raise ValueError("expected an object with a 'message'")
    message = data.get("message")
    return message if isinstance(message, str) else ""


@attrs.frozen
class _Reader(Generic[T]):
    """How a 2xx body becomes a value: from its text, and from its bytes when that is faster."""

    loads: Callable[[str], T]
    fast: Callable[[bytearray], T] | None = None


def _json_reader(build: Callable[[object], T]) -> _Reader[T]:
    """A body that is one JSON value, made into what ``build`` makes of it."""
    fast = speedups.loads
    if fast is None:
        return _Reader(lambda text: build(json.loads(text)))
    return _Reader(lambda text: build(json.loads(text)), lambda payload: build(fast(payload)))


@attrs.frozen
class _Streamed(Generic[T]):
    """A 2xx body read as it arrives (the job list), by a scan made afresh for each attempt."""

    open: Callable[[], ListScan[T]]


_JOB: Final = _json_reader(structure_job)
_BRIEF_JOB: Final = _json_reader(brief_job)
_EVENTS: Final = _json_reader(_events_of)
_CHECKPOINTS: Final = _json_reader(_checkpoints_of)
_DELETED: Final = _json_reader(_deleted_of)
_JOBS: Final = _Streamed(JobsScan)


def _decode(
    payload: bytearray,
    reader: _Reader[T],
    status: int,
    headers: Mapping[str, str],
    method: str,
    url: str,
) -> T:
    """Turn a whole 2xx body into what ``reader`` makes of it (see :func:`_parsed`).

    Its ``fast`` way (with the ``speedups`` extra) reads the bytes themselves;
    when that will not (SlowPath), ``loads`` reads the text and says what is wrong.
    """

    def parse() -> T:
        if reader.fast is not None:
            with contextlib.suppress(speedups.SlowPath):
                return reader.fast(payload)
        text = payload.decode("utf-8")
        if not text or text.isspace():
            raise EmptyBody
        return reader.loads(text)

    return _parsed(parse, payload, status, headers, method, url)


def _parsed(
    parse: Callable[[], T],
    head: bytes | bytearray,
    status: int,
    headers: Mapping[str, str],
    method: str,
    url: str,
) -> T:
    """What ``parse`` makes of a 2xx body; anything that goes wrong is ours.

    Whatever decoding or structuring raises (bad UTF-8, bad JSON, JSON of the
    wrong shape, data nested deeper than Python can follow) becomes one
    InvalidResponseError for this request, its excerpt from ``head`` (the
    body's first bytes), never an exception of its own.
    """
    transient = True
    try:
        return parse()
    except EmptyBody:
        problem = "an empty body"
    except UnicodeDecodeError:
        problem = "a body that is not UTF-8 text"
    except json.JSONDecodeError:
        kind = headers.get("Content-Type", "").split(";")[0] or "no content type"
        problem = f"a body that is not valid JSON ({kind})"
    except RecursionError:
        problem, transient = "JSON nested too deeply to read", False
    except STRUCTURE_ERRORS as error:
        problem = f"JSON of the wrong shape: {describe_error(error)}"
        transient = False
    except Exception as error:  # a parser's own failure: still this answer's problem
        problem = f"a body that could not be read ({type(error).__name__})"
        transient = False
    # Raised outside the except blocks: the parser's error (which holds the whole
    # body) is neither the cause nor the context of ours.
    raise InvalidResponseError(
        f"{method} {url}: HTTP {status} with {problem}",
        status_code=status,
        excerpt=_excerpt(head),
        request_id=request_id(headers),
        method=method,
        url=url,
        transient=transient,
    )


def _error_body(payload: bytearray) -> object:
    """The ``error`` member of an error body, or None when there is no readable one."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except Exception:  # not JSON, not UTF-8, nested too deeply: no error object
        return None
    return data.get("error") if type(data) is dict else None


def _text(value: object) -> str | None:
    """A scalar of an error body as text; anything else (a nested object) is dropped."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


class FineTunesAPI:
    """Async calls to the fine-tunes endpoints over one aiohttp session.

    The session is the caller's (never closed here) or one of its own, created
    on first use and closed by :meth:`aclose`. ``max_concurrency`` caps HTTP
    requests in flight; the rate gate (its own, or ``rate_gate`` shared with
    other clients on the same key) paces them. ``on_event`` hears retries and
    the gate's changes.
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
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        rate_gate: RateGate | None = None,
        on_event: Callable[[RetryEvent | RateChanged], Awaitable[None]] | None = None,
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
        if rate_gate is not None and max_requests_per_second is not None:
            raise ValueError("give max_requests_per_second to the shared RateGate instead")
        if rate_gate is not None and not isinstance(rate_gate, RateGate):
            raise TypeError("rate_gate must be a RateGate")
        self.gate = rate_gate or RateGate(max_requests_per_second, sleep=sleep)
        self._gate_changes_seen = self.gate.change_count  # a shared gate's past is not ours
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
        self._budget = BodyBudget(max_buffered_bytes)
        self._on_event = on_event
        self._sleep = sleep
        self._closed = False

    def __repr__(self) -> str:
        return f"FineTunesAPI(base_url={self.base_url!r}, max_concurrency={self.max_concurrency})"

    @property
    def has_api_key(self) -> bool:
        return self._key is not None

    # -- the endpoints -------------------------------------------------------

    async def cancel(
        self,
        job_id: str,
        *,
        call: CallState | None = None,
        retry: RetryPolicy | None = None,
        brief: bool = False,
    ) -> FineTuneJob:
        """POST /fine-tunes/{id}/cancel: the job as the API left it (truncated record).

        ``brief``: for a caller that will watch the job anyway, a job still
        active comes as its id, status and ``updated_at`` only (the next look
        brings the rest); a terminal one is structured in full.
        """
        return await self._request(
            method="POST",
            path=f"/fine-tunes/{check_job_id(job_id)}/cancel",
            endpoint="cancel",
            job_id=job_id,
            call=call,
            retry=retry,
            reader=_BRIEF_JOB if brief else _JOB,
        )

    async def retrieve(
        self, job_id: str, *, call: CallState | None = None, retry: RetryPolicy | None = None
    ) -> FineTuneJob:
        """GET /fine-tunes/{id}: the full job record."""
        return await self._request(
            method="GET",
            path=f"/fine-tunes/{check_job_id(job_id)}",
            endpoint="retrieve",
            job_id=job_id,
            call=call,
            retry=retry,
            reader=_JOB,
        )

    async def list_changes(
        self,
        known: Mapping[str, str | None],
        *,
        retry: RetryPolicy | None = None,
        memo: ListMemo | None = None,
        most: int | None = None,
    ) -> TimedChanges:
        """GET /fine-tunes for polling: what changed among the ``known`` jobs.

        ``known`` maps the ids being watched to their last status (None: not
        seen yet). Returns the jobs whose listed status differs, structured (or
        the error that made one unreadable), and the ids the list has an entry
        for. The answer is read as it arrives and every other entry dropped as
        soon as it is read, so even a 100,000-job listing is never held in
        memory, as bytes, text or objects. With them, the seconds reading the
        answer took. ``memo`` (one per poller) lets entries whose text has not
        changed since the last read go undecoded. With ``most``, the answer is
        read no further than that many entries (the connection is then closed):
        what the list says of later ones is unknown, and the size it gives is
        what was read.
        """
        return await self._request(
            method="GET",
            path="/fine-tunes",
            endpoint="list",
            retry=retry,
            reader=_Streamed(lambda: ChangesScan(known, memo, most)),
            limit=self._max_list_body_size,
        )

    async def list(self, *, call: CallState | None = None) -> list[FineTuneJob]:
        """GET /fine-tunes: every job of the account (truncated records)."""
        return await self._request(
            method="GET",
            path="/fine-tunes",
            endpoint="list",
            call=call,
            reader=_JOBS,
            limit=self._max_list_body_size,
        )

    async def events(
        self, job_id: str, *, call: CallState | None = None
    ) -> tuple[FineTuneEvent, ...]:
        """GET /fine-tunes/{id}/events: the job's events, oldest first."""
        return await self._request(
            method="GET",
            path=f"/fine-tunes/{check_job_id(job_id)}/events",
            endpoint="events",
            job_id=job_id,
            call=call,
            reader=_EVENTS,
        )

    async def checkpoints(
        self, job_id: str, *, call: CallState | None = None
    ) -> tuple[FineTuneCheckpoint, ...]:
        """GET /fine-tunes/{id}/checkpoints: the checkpoints the job saved."""
        return await self._request(
            method="GET",
            path=f"/fine-tunes/{check_job_id(job_id)}/checkpoints",
            endpoint="checkpoints",
            job_id=job_id,
            call=call,
            reader=_CHECKPOINTS,
        )

    async def delete(self, job_id: str, *, call: CallState | None = None) -> str:
        """DELETE /fine-tunes/{id}: the API's message."""
        return await self._request(
            method="DELETE",
            path=f"/fine-tunes/{check_job_id(job_id)}",
            endpoint="delete",
            job_id=job_id,
            call=call,
            reader=_DELETED,
        )

    async def create(self, *, model: str, training_file: str, **params: Any) -> FineTuneJob:
        """POST /fine-tunes: start a job (not retried: a lost answer could mean two jobs)."""
        return await self._request(
            method="POST",
            path="/fine-tunes",
            endpoint="create",
            body={"model": model, "training_file": training_file, **params},
            retry=RetryPolicy.no_retry(),
            reader=_JOB,
        )

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
        *,
        method: str,
        path: str,
        endpoint: str,
        reader: _Reader[T] | _Streamed[T],
        job_id: str | None = None,
        call: CallState | None = None,
        body: Any = None,
        retry: RetryPolicy | None = None,
        limit: int | None = None,
    ) -> T:
        session = self._ensure_session()
        policy = retry or self.retry
        request = _Request(
            method=method,
            url=self.base_url + path,
            body=body,
            limit=limit or self._max_body_size,
            # A stale pooled connection gets one fresh try for free, unless the
            # request must never be sent twice (create).
            resend_once=policy.attempts > 1 and method not in _RESENT_BY_AIOHTTP,
        )

        async def attempt() -> T:
            try:
                async with self._slots:
                    # The gate is passed holding a slot, so that nothing queued on the
                    # slots can slip out during a manager-wide wait.
                    ticket = await self.gate.acquire()
                    if call is not None:
                        call.attempts += 1
                    return await self._send(session, request, reader, ticket)
            finally:
                if self.gate.change_count != self._gate_changes_seen:
                    await self._tell_gate_changes()  # outside the slot: listeners may be slow

        return await retrying(
            attempt,
            policy,
            endpoint=endpoint,
            job_id=job_id,
            on_retry=self._on_event,
            sleep=self._backoff,
            in_outage=lambda: self.gate.in_outage,
        )

    async def _backoff(self, seconds: float) -> None:
        await self.gate.backoff(seconds, self._sleep)

    async def _tell_gate_changes(self) -> None:
        changes, self._gate_changes_seen = self.gate.changes_after(self._gate_changes_seen)
        if self._on_event is not None:
            for change in changes:
                await self._on_event(change)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        request: _Request,
        reader: _Reader[T] | _Streamed[T],
        ticket: Ticket,
    ) -> T:
        sink = reader.open() if isinstance(reader, _Streamed) else None
        try:
            status, headers, payload = await self._exchange(session, request, sink)
        except InvalidResponseError:  # an answer over its cap: says nothing of the rate
            self.gate.released(ticket)
            raise
        except FinetuneOpsError:  # no answer at all
            self.gate.failed(ticket)
            raise
        except BaseException:
            self.gate.released(ticket)
            raise
        self.gate.answered(ticket, status, headers)
        held = len(payload)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %d", request.method, request.url, status)
        try:
            if 200 <= status < 300:
                method, url = request.method, request.url
                if sink is not None:
                    return _parsed(sink.finish, sink.head, status, headers, method, url)
                assert isinstance(reader, _Reader)
                return _decode(payload, reader, status, headers, method, url)
            failure: FinetuneOpsError = self._status_error(
                payload, status, headers, request.method, request.url
            )
        except InvalidResponseError as error:
            failure = error
        finally:
            self._budget.give_back(held)  # parsed, or given up: the bytes are free
        raise self._redacted(failure)

    async def _exchange(
        self, session: aiohttp.ClientSession, request: _Request, sink: ListScan[Any] | None
    ) -> tuple[int, Mapping[str, str], bytearray]:
        """Send once (twice after a stale connection) and read the whole answer.

        A 2xx body goes to ``sink`` as it arrives, when there is one.

        aiohttp's exceptions are turned into ours here and never chained: their
        request details carry the Authorization header.
        """
        method, url = request.method, request.url
        resend = request.resend_once
        failure: BaseException
        while True:
            try:
                response = await session.request(
                    method,
                    url,
                    headers=self._headers,
                    json=request.body,
                    allow_redirects=False,  # never carry the key to another place
                    timeout=self._client_timeout,
                )
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                if resend and not isinstance(error, aiohttp.ClientConnectorError):
                    # Closed before any byte of the answer came: most often a pooled
                    # connection the server had dropped. Once more, without backoff.
                    resend = False
                    continue
                failure = _connection_error(error, method, url)
            except BaseException as error:
                failure = self._transport_error(error, session, method, url)
            else:
                try:
                    payload = await read_body(
                        response,
                        method,
                        url,
                        cap=request.limit,
                        budget=self._budget,
                        sink=sink if 200 <= response.status < 300 else None,
                    )
                except BaseException as error:
                    response.close()  # the connection is not reused with a body half read
                    failure = self._transport_error(error, session, method, url)
                else:
                    if sink is None or sink.wants_more:
                        response.release()
                    else:
                        response.close()  # the rest of the body is not wanted
                    return response.status, response.headers, payload
            raise failure

    def _transport_error(
        self, error: BaseException, session: aiohttp.ClientSession, method: str, url: str
    ) -> BaseException:
        """What to raise for ``error`` from sending or reading: ours, or the error itself."""
        if isinstance(error, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is None or task.cancelling():
                return error  # the caller's own cancellation: it goes on as it is
            # Something else cancelled this request (aiohttp does when a session
            # closes under requests waiting for a connection).
            if session.closed:
                return RuntimeError(f"the aiohttp session was closed during {method} {url}")
            return APIConnectionError(
                f"{method} {url} was cancelled by something other than its caller",
                method=method,
                url=url,
            )
        if isinstance(error, TimeoutError):
            return APITimeoutError(
                f"{method} {url} timed out after {self.timeouts.request:g}s",
                method=method,
                url=url,
            )
        if isinstance(error, aiohttp.ClientError):
            return _connection_error(error, method, url)
        return error  # ours (a body over the cap), misuse, or a bug: as it is

    def _redacted(self, error: FinetuneOpsError) -> FinetuneOpsError:
        """``error`` with the key replaced wherever a server echoed it into its text.

        Every error built from an answer passes here, so no message, excerpt or
        field of ours repeats a key that a server or proxy put in its body.
        """
        if self._key is None:
            return error
        secret = self._key.reveal()
        for name, value in vars(error).items():
            if isinstance(value, str) and secret in value:
                setattr(error, name, value.replace(secret, REDACTED))
        error.args = tuple(
            arg.replace(secret, REDACTED) if isinstance(arg, str) else arg for arg in error.args
        )
        return error

    def _status_error(
        self, payload: bytearray, status: int, headers: Mapping[str, str], method: str, url: str
    ) -> APIStatusError:
        fields: dict[str, str | None] = {}
        error = _error_body(payload)
        message: str | None = None
        if isinstance(error, dict):
            for name in ("type", "param", "code"):
                fields[name] = _text(error.get(name))
            message = _text(error.get("message")) or "no message"
        elif isinstance(error, str):
            message = error
        elif 300 <= status < 400:
            message = f"unexpected redirect to {headers.get('Location', '?')!r}, not followed"
        if message is None:
            message = f"{method} {url} answered without an error object: {_excerpt(payload)!r}"
        if status == 401 and self._key is None:
            message += " (no API key given: pass api_key or set TOGETHER_API_KEY)"
        return status_error(
            status,
            message,
            request_id=request_id(headers),
            retry_after=retry_hint(headers, time.time()),
            should_retry=should_retry_hint(headers),
            **fields,
        )


#: Methods aiohttp itself sends again once after a connection dropped before the answer.
_RESENT_BY_AIOHTTP = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@attrs.frozen(kw_only=True)
class _Request:
    """What one call sends, the same for each of its attempts."""

    method: str
    url: str
    body: Any
    limit: int
    resend_once: bool


def _connection_error(error: BaseException, method: str, url: str) -> APIConnectionError:
    # Only the type and text: the aiohttp exception itself stays out of ours.
    return APIConnectionError(
        f"{method} {url} failed: {type(error).__name__}: {error}", method=method, url=url
    )
