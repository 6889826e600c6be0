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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ._account import DOWNLOAD_CHECKPOINTS, estimate, whoami
from ._create import RequestError, parse_create, parse_estimate
from ._download import archive, byte_range
from ._faults import BEFORE_EFFECT, FaultInjector, FaultKind
from ._lifecycle import TERMINAL
from ._models import MODELS, find_model
from ._ratelimit import RateLimiter
from ._responses import (
    JSON_TYPE,
    error_response,
    fault_response,
    json_response,
    rate_limited,
    short_of_capacity,
    truncate,
)
from ._store import Job, JobStore

Operation = Callable[[web.Request, "str | None"], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}
_OCTET_STREAM = "application/octet-stream"


class Service:
    """Request handling over a `JobStore`, with counting, auth and injected faults.

    `keys` maps each accepted API key to its project (None: any key or none
    is accepted and every caller sees every job).
    """

    def __init__(
        self,
        store: JobStore,
        faults: FaultInjector,
        counters: Counter[str],
        keys: Mapping[str, str] | None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.faults = faults
        self.counters = counters
        self._keys = (
            None
            if keys is None
            else [(f"Bearer {key}".encode(), project) for key, project in keys.items()]
        )
        self._request_ids = itertools.count(1)
        self._request_prefix = f"req_{uuid.uuid4().hex[:12]}"
        # Set when the server stops, so hanging and sleeping requests end.
        self.release = asyncio.Event()

    def make_app(self) -> web.Application:
        """A fresh application on this service (an application binds to one event loop)."""
        app = web.Application(middlewares=[_json_errors])
        app.on_response_prepare.append(self._stamp_headers)
        router = app.router

        def add(path: str, **operations: tuple[str, Operation]) -> None:
            # Every path answers every method: the ones it serves, and a 405 naming
            # them for the rest, so that no route further down (a job id) takes
            # a word like "estimate-price" for an id.
            resource = router.add_resource(path)
            for method, (name, operation) in operations.items():
                resource.add_route(method.upper(), self._endpoint(name, operation))
            # Any other method (OPTIONS, TRACE, ... too) reaches this one, added last.
            resource.add_route(
                "*", _not_allowed(", ".join(method.upper() for method in operations))
            )

        add("/v1/fine-tunes", post=("create", self._create), get=("list", self._list))
        add("/v1/fine-tunes/estimate-price", post=("estimate_price", self._estimate_price))
        add("/v1/fine-tunes/models/limits", get=("model_limits", self._model_limits))
        add("/v1/fine-tunes/models/supported", get=("supported_models", self._supported))
        # "models" is a word of the API, not a job id.
        router.add_route("*", "/v1/fine-tunes/models", _no_such_route)
        add(
            "/v1/fine-tunes/{id}",
            get=("retrieve", self._retrieve),
            delete=("delete", self._delete),
        )
        add("/v1/fine-tunes/{id}/cancel", post=("cancel", self._cancel))
        add("/v1/fine-tunes/{id}/events", get=("events", self._events))
        add("/v1/fine-tunes/{id}/checkpoints", get=("checkpoints", self._checkpoints))
        add("/v1/fine-tunes/{id}/metrics", get=("metrics", self._metrics))
        add("/v1/finetune/download", get=("download", self._download))
        add("/v3/whoami", get=("whoami", self._whoami))
        # Anything else under the fine-tunes paths is a 404 in the API's error shape.
        router.add_route("*", "/v1/fine-tunes/{rest:.+}", _no_such_route)
        return app

    async def _stamp_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if "x-request-id" not in response.headers:
            response.headers["x-request-id"] = f"{self._request_prefix}_{next(self._request_ids)}"
        if self.limiter is not None:
            response.headers.update(self.limiter.headers())

    # -- the pipeline every endpoint shares ---------------------------------

    def _endpoint(self, name: str, operation: Operation) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.counters[name] += 1
            plan = self.faults.plan
            if plan.latency > 0:
                await self._pause(plan.latency)
            project = None
            if self._keys is not None:
                project = self._project(request)
                if project is None:
                    return _unauthorized(request)
            if self.limiter is not None:
                decision = self.limiter.decide()
                if not decision.admitted:
                    return rate_limited(decision.wait)
                if decision.short_of_capacity:
                    return short_of_capacity()
            job_id = request.match_info.get("id") or request.query.get("ft_id")
            kind = self.faults.draw(name, job_id)
            if kind is None:
                return await operation(request, project)
            if kind in BEFORE_EFFECT:
                if kind is FaultKind.HANG:
                    return await self._hang(request)
                return fault_response(kind, plan.retry_after)
            if kind is FaultKind.LATENCY:
                await self._pause(plan.spike)
                return await operation(request, project)
            response = await operation(request, project)
            body = response.body if isinstance(response, web.Response) else None
            data = body if isinstance(body, bytes) else b""
            if kind is FaultKind.TRUNCATED_JSON:
                return json_response(response.status, truncate(data))
            return await _reset(request, response.status, data)

        return handle

    def _project(self, request: web.Request) -> str | None:
        """The project of the key the request carries, or None if it carries no valid key."""
        given = request.headers.get("Authorization", "").encode()
        found = None
        # Compare with every key, in constant time, so timing says nothing of which matched.
        for expected, project in self._keys or ():
            if hmac.compare_digest(given, expected):
                found = project
        return found

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

    def _job(self, request: web.Request, project: str | None) -> Job | None:
        return self.store.get(request.match_info["id"], project)

    # -- the endpoints ------------------------------------------------------

    async def _create(self, request: web.Request, project: str | None) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(
                400, "The request body is not valid JSON.", "invalid_request_error"
            )
        try:
            settings, base = parse_create(body)
        except RequestError as exc:
            return error_response(
                400, str(exc), "invalid_request_error", param=exc.param, code=exc.code
            )
        job = self.store.create(settings, base, project)
        return json_response(200, self.store.created_json(job))

    async def _list(self, request: web.Request, project: str | None) -> web.Response:
        return json_response(200, self.store.list_json(project))

    async def _retrieve(self, request: web.Request, project: str | None) -> web.Response:
        job = self._job(request, project)
        if job is None:
            return _not_found(request)
        return json_response(200, json.dumps(self.store.full(job)))

    async def _delete(self, request: web.Request, project: str | None) -> web.Response:
        job = self._job(request, project)
        if job is None:
            return _not_found(request)
        if job.status not in TERMINAL:
            return error_response(
                400,
                f"Job {job.id} is still {job.status}; cancel it and let it stop before deleting.",
                "invalid_request_error",
                param="id",
                code="job_not_deletable",
            )
        self.store.delete(job)
        return json_response(200, json.dumps({"message": f"Fine-tune job {job.id} deleted."}))

    async def _cancel(self, request: web.Request, project: str | None) -> web.Response:
        job = self._job(request, project)
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

    async def _events(self, request: web.Request, project: str | None) -> web.Response:
        job = self._job(request, project)
        if job is None:
            return _not_found(request)
        return json_response(200, json.dumps({"data": self.store.events(job)}))

    async def _checkpoints(self, request: web.Request, project: str | None) -> web.Response:
        job = self._job(request, project)
        if job is None:
            return _not_found(request)
        return json_response(200, json.dumps({"data": self.store.checkpoints(job)}))

    async def _metrics(self, request: web.Request, project: str | None) -> web.Response:
        job = self._job(request, project)
        if job is None:
            return _not_found(request)
        # The spec puts the filters in a JSON body of the GET; the SDKs send a query.
        filters: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
            if not isinstance(body, dict):
                return error_response(
                    400, "The request body must be a JSON object.", "invalid_request_error"
                )
            filters.update(body)
        try:
            first = _step(filters.get("global_step_from"), 0)
            last = _step(filters.get("global_step_to"), 2**63 - 1)
        except ValueError as exc:
            return error_response(400, str(exc), "invalid_request_error", code="invalid_value")
        return json_response(200, json.dumps({"metrics": self.store.metrics(job, first, last)}))

    async def _download(self, request: web.Request, project: str | None) -> web.Response:
        query = request.query
        job_id = query.get("ft_id", "")
        if not job_id:
            return _invalid("'ft_id' is required.", "ft_id")
        checkpoint = query.get("checkpoint")
        if checkpoint is not None and checkpoint not in DOWNLOAD_CHECKPOINTS:
            return _invalid(
                f"'checkpoint' must be one of {', '.join(DOWNLOAD_CHECKPOINTS)}.", "checkpoint"
            )
        try:
            step = _step(query.get("checkpoint_step"), 0)
        except ValueError as exc:
            return _invalid(str(exc), "checkpoint_step")
        job = self.store.get(job_id, project)
        if job is None:
            return _not_found(request, job_id)
        saved = self.store.checkpoints(job)
        if step > 0:
            chosen = next((entry for entry in saved if entry["step"] == step), None)
            if chosen is None:
                return _not_found(request, f"{job_id}:{step}")
        elif saved and saved[-1]["checkpoint_type"] == "Final":
            chosen = saved[-1]
        else:
            return _invalid(f"Job {job_id} has no final model yet ({job.status}).", "ft_id")
        data = archive(
            {
                "job_id": job.id,
                "model": job.template.model,
                "output_name": job.template.output_name(job.id),
                "step": chosen["step"],
                "checkpoint": checkpoint or "merged",
                "path": chosen["path"],
            }
        )
        return _file_response(request, data, f"{job.id}-step-{chosen['step']}.tar.gz")

    async def _estimate_price(self, request: web.Request, project: str | None) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        try:
            fields = parse_estimate(body)
        except RequestError as exc:
            return error_response(
                400, str(exc), "invalid_request_error", param=exc.param, code=exc.code
            )
        return json_response(200, json.dumps(estimate(fields)))

    async def _model_limits(self, request: web.Request, project: str | None) -> web.Response:
        # The spec's parameter is model_name; SDK 1.x's async client sends `model`.
        name = request.query.get("model_name") or request.query.get("model", "")
        base = find_model(name)
        if base is None:
            # The spec's shape for this 404 is a bare {"message": ...}.
            message = f"Model {name!r} is not supported for fine-tuning."
            return json_response(404, json.dumps({"message": message}))
        return json_response(200, json.dumps(base.limits()))

    async def _supported(self, request: web.Request, project: str | None) -> web.Response:
        return json_response(200, json.dumps({"models": [model.name for model in MODELS]}))

    async def _whoami(self, request: web.Request, project: str | None) -> web.Response:
        return json_response(200, json.dumps(whoami(project)))


def _not_found(request: web.Request, job_id: str | None = None) -> web.Response:
    if job_id is None:
        job_id = request.match_info.get("id", "")
    return error_response(
        404,
        f"Fine-tune job {job_id!r} does not exist.",
        "not_found_error",
        param="id",
        code="job_not_found",
    )


def _invalid(message: str, param: str | None) -> web.Response:
    return error_response(400, message, "invalid_request_error", param=param, code="invalid_value")


def _step(value: Any, default: int) -> int:
    """A whole-number step from a query or body value; ValueError for anything else."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"A step must be a whole number, got {value!r}.")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"A step must be a whole number, got {value!r}.") from None


def _file_response(request: web.Request, data: bytes, filename: str) -> web.Response:
    """`data` as a download, honouring a single `Range` (a client may ask for its size)."""
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Accept-Ranges": "bytes",
    }
    try:
        wanted = byte_range(request.headers.get("Range"), len(data))
    except ValueError:
        headers["Content-Range"] = f"bytes */{len(data)}"
        return web.Response(status=416, headers=headers)
    if wanted is None:
        return web.Response(body=data, content_type=_OCTET_STREAM, headers=headers)
    first, last = wanted
    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    return web.Response(
        status=206, body=data[first : last + 1], content_type=_OCTET_STREAM, headers=headers
    )


def _not_allowed(allowed: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = error_response(
            405, f"{request.method} is not allowed here; use {allowed}.", "invalid_request_error"
        )
        response.headers["Allow"] = allowed
        return response

    return handle


async def _no_such_route(request: web.Request) -> web.StreamResponse:
    return error_response(404, f"No such route: {request.method} {request.path}", "not_found_error")


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
