"""The HTTP face of the simulator: routes, handlers, auth and fault application."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import socket
import struct
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._faults import BEFORE_EFFECT, FaultInjector, FaultKind
from ._jobs import RequestError, parse_create
from ._ratelimit import RateLimiter
from ._responses import (
    JSON_TYPE,
    error_response,
    fault_response,
    json_response,
    rate_limited,
    truncate,
)
from ._store import JobStore

Operation = Callable[[web.Request], Awaitable[web.Response]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}


class Service:
    """Request handling over a `JobStore`, with counting, auth and injected faults."""

    def __init__(
        self,
        store: JobStore,
        faults: FaultInjector,
        counters: Counter[str],
        api_key: str | None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.faults = faults
        self.counters = counters
        self._expected = None if api_key is None else f"Bearer {api_key}".encode()
        self._request_ids = itertools.count(1)
        self._request_prefix = f"req_{uuid.uuid4().hex[:12]}"
        # Set when the server stops, so hanging and sleeping requests end.
        self.release = asyncio.Event()

    def make_app(self) -> web.Application:
        """A fresh application on this service (an application binds to one event loop)."""
        app = web.Application(middlewares=[_json_errors])
        app.on_response_prepare.append(self._stamp_request_id)
        add = app.router.add_route
        add("POST", "/v1/fine-tunes", self._endpoint("create", self._create))
        add("GET", "/v1/fine-tunes", self._endpoint("list", self._list))
        add("GET", "/v1/fine-tunes/{id}", self._endpoint("retrieve", self._retrieve))
        add("POST", "/v1/fine-tunes/{id}/cancel", self._endpoint("cancel", self._cancel))
        add("GET", "/v1/fine-tunes/{id}/events", self._endpoint("events", self._events))
        return app

    async def _stamp_request_id(self, request: web.Request, response: web.StreamResponse) -> None:
        if "x-request-id" not in response.headers:
            response.headers["x-request-id"] = f"{self._request_prefix}_{next(self._request_ids)}"

    # -- the pipeline every endpoint shares ---------------------------------

    def _endpoint(self, name: str, operation: Operation) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.counters[name] += 1
            plan = self.faults.plan
            if plan.latency > 0:
                await self._pause(plan.latency)
            if self._expected is not None and not self._authorized(request):
                return _unauthorized(request)
            if self.limiter is not None and (wait := self.limiter.admit()) is not None:
                return rate_limited(wait)
            kind = self.faults.draw(name, request.match_info.get("id"))
            if kind is None:
                return await operation(request)
            if kind in BEFORE_EFFECT:
                if kind is FaultKind.HANG:
                    return await self._hang(request)
                return fault_response(kind, plan.retry_after)
            if kind is FaultKind.LATENCY:
                await self._pause(plan.spike)
                return await operation(request)
            response = await operation(request)
            body = response.body if isinstance(response.body, bytes) else b""
            if kind is FaultKind.TRUNCATED_JSON:
                return json_response(response.status, truncate(body))
            return await _reset(request, response.status, body)

        return handle

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").encode()
        return self._expected is not None and hmac.compare_digest(given, self._expected)

    async def _pause(self, seconds: float) -> None:
        # Sleeps end early when the server stops, so shutdown never waits on them.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.release.wait()

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        await self.release.wait()
        # Stopping: drop the connection without an answer, as a stuck server would.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=503)

    # -- the endpoints ------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(
                400, "The request body is not valid JSON.", "invalid_request_error"
            )
        try:
            fields = parse_create(body)
        except RequestError as exc:
            return error_response(
                400, str(exc), "invalid_request_error", param=exc.param, code="invalid_value"
            )
        job = self.store.create(fields)
        return json_response(200, self.store.truncated_json(job))

    async def _list(self, request: web.Request) -> web.Response:
        return json_response(200, self.store.list_json())

    async def _retrieve(self, request: web.Request) -> web.Response:
        job = self.store.get(request.match_info["id"])
        if job is None:
            return _not_found(request)
        return json_response(200, json.dumps(self.store.full(job)))

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self.store.get(request.match_info["id"])
        if job is None:
            return _not_found(request)
        if not self.store.cancel(job):
            return error_response(
                400,
                f"Job {job.id} has already finished ({job.status}) and cannot be cancelled.",
                "invalid_request_error",
                param="id",
                code="job_not_cancellable",
            )
        return json_response(200, self.store.truncated_json(job))

    async def _events(self, request: web.Request) -> web.Response:
        job = self.store.get(request.match_info["id"])
        if job is None:
            return _not_found(request)
        return json_response(200, json.dumps({"data": self.store.events(job)}))


def _not_found(request: web.Request) -> web.Response:
    job_id = request.match_info.get("id", "")
    return error_response(
        404,
        f"Fine-tune job {job_id!r} does not exist.",
        "not_found_error",
        param="id",
        code="job_not_found",
    )


def _unauthorized(request: web.Request) -> web.Response:
    # Never echo what was sent: it may be somebody's real key.
    if "Authorization" not in request.headers:
        message = "No API key provided; send 'Authorization: Bearer <key>'."
    else:
        message = "Invalid API key provided."
    return error_response(401, message, "authentication_error", code="invalid_api_key")


async def _reset(request: web.Request, status: int, body: bytes) -> web.StreamResponse:
    """Send the headers and half the body, then reset the connection."""
    response = web.StreamResponse(status=status)
    response.content_type = JSON_TYPE
    response.content_length = len(body)
    try:
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    except ConnectionError:
        return response  # the client left first: nothing left to reset
    transport = request.transport
    if transport is not None:
        # Let the partial body leave before the reset discards what is still buffered.
        for _ in range(100):
            if transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close with RST instead of FIN, a real "connection reset by peer".
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # aiohttp's write_eof on the dead transport raises ConnectionError, which it
    # treats as a client that went away: nothing is logged.
    return response


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Routing errors (unknown path, wrong method) in the API's JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(
            exc.status, exc.reason, _ERROR_TYPES.get(exc.status, "invalid_request_error")
        )
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
