"""The HTTP layer over loopback against the simulator: calls, errors, faults, and the key."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from finetune_ops import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    FineTuneJob,
    FinetuneOpsError,
    InternalServerError,
    InvalidJobIdError,
    InvalidResponseError,
    JobStatus,
    NotFoundError,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
    Timeouts,
)
from finetune_ops._api import CallState, FineTunesAPI
from finetune_ops.testing import FaultKind, FaultPlan, ManualClock, Simulator

ServeApp = Callable[[web.Application], AbstractAsyncContextManager[str]]

KEY = "sk-test-0123456789-secret"
FAST = RetryPolicy(wait_initial=0, wait_max=0, wait_jitter=0)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(api_key=KEY, clock=ManualClock(), faults=FaultPlan(retry_after=0.01))
    async with simulator.serve():
        yield simulator


@pytest_asyncio.fixture
async def api(sim: Simulator) -> AsyncIterator[FineTunesAPI]:
    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url, retry=FAST)
    yield client
    await client.aclose()


async def test_cancel_retrieve_list_events(sim: Simulator, api: FineTunesAPI) -> None:
    """Each endpoint returns typed records built from the simulator's spec-shaped JSON."""
    job_id = sim.add_job("running")
    job = await api.cancel(job_id)
    assert job.id == job_id
    assert job.status == JobStatus.CANCEL_REQUESTED
    full = await api.retrieve(job_id)
    assert full.status == "cancel_requested"
    assert full.model
    assert full.created_at is not None
    assert full.created_at.tzinfo is not None
    listed = await api.list()
    assert [j.id for j in listed] == [job_id]
    events = await api.events(job_id)
    assert events
    assert events[-1].type == "cancel_requested"
    assert sim.counters["cancel"] == 1
    assert sim.counters["retrieve"] == 1


async def test_create(sim: Simulator, api: FineTunesAPI) -> None:
    """Create starts a job the simulator then knows."""
    job = await api.create(
        model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", training_file="file-1"
    )
    assert sim.status(job.id) == job.status


async def test_unknown_id_is_not_found(sim: Simulator, api: FineTunesAPI) -> None:
    """A 404 is raised once, with the error body's fields, and not retried."""
    call = CallState()
    with pytest.raises(NotFoundError) as info:
        await api.cancel("ft-does-not-exist", call=call)
    assert info.value.status_code == 404
    assert info.value.type
    assert info.value.request_id
    assert call.attempts == 1


async def test_cancel_terminal_is_bad_request(sim: Simulator, api: FineTunesAPI) -> None:
    """Cancelling a job that already ended answers 400."""
    job_id = sim.add_job("completed")
    with pytest.raises(BadRequestError):
        await api.cancel(job_id)


async def test_wrong_key(sim: Simulator) -> None:
    """A wrong key is an AuthenticationError, and the message never shows the key."""
    client = FineTunesAPI(api_key="sk-wrong-key-123", base_url=sim.base_url, retry=FAST)
    try:
        with pytest.raises(AuthenticationError) as info:
            await client.list()
    finally:
        await client.aclose()
    assert "sk-wrong-key-123" not in str(info.value) + repr(info.value)


async def test_missing_key_says_so(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no key anywhere, the 401 explains where a key comes from."""
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    client = FineTunesAPI(base_url=sim.base_url, retry=FAST)
    try:
        with pytest.raises(AuthenticationError, match="TOGETHER_API_KEY"):
            await client.list()
    finally:
        await client.aclose()


async def test_key_from_environment(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key and base URL come from the environment when not given."""
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    assert sim.base_url is not None
    monkeypatch.setenv("TOGETHER_BASE_URL", sim.base_url.removesuffix("/v1"))
    client = FineTunesAPI(retry=FAST)
    try:
        assert await client.list() == []
    finally:
        await client.aclose()


async def test_invalid_id_sends_nothing(sim: Simulator, api: FineTunesAPI) -> None:
    """An id that could escape its path is refused before any request."""
    for bad in ("ft-../../admin", "ft-a?b=c", "ft-a/b", "ft-%2F", "", " "):
        with pytest.raises(InvalidJobIdError):
            await api.cancel(bad)
    assert sim.total_requests == 0


RECOVERABLE = [
    FaultKind.RATE_LIMIT_SECONDS,
    FaultKind.RATE_LIMIT_DATE,
    FaultKind.RATE_LIMIT_MS,
    FaultKind.RATE_LIMIT_NO_HINT,
    FaultKind.SERVER_ERROR_500,
    FaultKind.BAD_GATEWAY_502,
    FaultKind.UNAVAILABLE_503,
    FaultKind.GATEWAY_TIMEOUT_504,
    FaultKind.RESET,
    FaultKind.TRUNCATED_JSON,
    FaultKind.HTML_PAGE,
    FaultKind.EMPTY_BODY,
    FaultKind.HANG,
]


@pytest.mark.parametrize("kind", RECOVERABLE)
async def test_each_fault_is_retried_to_success(sim: Simulator, kind: FaultKind) -> None:
    """Every transient fault costs one more attempt and the call then succeeds."""
    job_id = sim.add_job("running")
    sim.inject(kind, endpoint="cancel")
    events: list[RetryEvent] = []

    async def on_retry(event: RetryEvent) -> None:
        events.append(event)

    client = FineTunesAPI(
        api_key=KEY,
        base_url=sim.base_url,
        retry=FAST,
        timeouts=Timeouts(request=0.3),
        on_event=on_retry,
    )
    call = CallState()
    try:
        job = await client.cancel(job_id, call=call)
    finally:
        await client.aclose()
    assert job.status == "cancel_requested"
    assert call.attempts == 2
    assert [(e.endpoint, e.job_id, e.attempt) for e in events] == [("cancel", job_id, 1)]
    assert sim.counters["cancel"] == 2


EXPECTED_ERROR = {
    FaultKind.RATE_LIMIT_SECONDS: RateLimitError,
    FaultKind.RATE_LIMIT_DATE: RateLimitError,
    FaultKind.RATE_LIMIT_MS: RateLimitError,
    FaultKind.RATE_LIMIT_NO_HINT: RateLimitError,
    FaultKind.SERVER_ERROR_500: InternalServerError,
    FaultKind.BAD_GATEWAY_502: InternalServerError,
    FaultKind.UNAVAILABLE_503: InternalServerError,
    FaultKind.GATEWAY_TIMEOUT_504: InternalServerError,
    FaultKind.RESET: APIConnectionError,
    FaultKind.TRUNCATED_JSON: InvalidResponseError,
    FaultKind.HTML_PAGE: InternalServerError,
    FaultKind.EMPTY_BODY: InternalServerError,
    FaultKind.HANG: APITimeoutError,
}


@pytest.mark.parametrize("kind", RECOVERABLE)
async def test_each_fault_maps_to_its_error(sim: Simulator, kind: FaultKind) -> None:
    """With no retries, every fault kind surfaces as its documented error class."""
    job_id = sim.add_job("running")
    sim.inject(kind, endpoint="retrieve")
    client = FineTunesAPI(
        api_key=KEY,
        base_url=sim.base_url,
        retry=RetryPolicy.no_retry(),
        timeouts=Timeouts(request=0.3),
    )
    try:
        with pytest.raises(FinetuneOpsError) as info:
            await client.retrieve(job_id)
    finally:
        await client.aclose()
    assert type(info.value) is EXPECTED_ERROR[kind]
    assert KEY not in str(info.value) + repr(info.value)


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        (FaultKind.RATE_LIMIT_SECONDS, True),
        (FaultKind.RATE_LIMIT_MS, True),
        (FaultKind.RATE_LIMIT_DATE, True),
        (FaultKind.RATE_LIMIT_NO_HINT, False),
    ],
)
async def test_rate_limit_hints_are_read(sim: Simulator, kind: FaultKind, hint: bool) -> None:
    """Each Retry-After form the simulator sends is understood."""
    sim.inject(kind, endpoint="list")
    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url, retry=RetryPolicy.no_retry())
    try:
        with pytest.raises(RateLimitError) as info:
            await client.list()
    finally:
        await client.aclose()
    assert (info.value.retry_after is not None) is hint
    if hint:
        assert info.value.retry_after is not None
        # An HTTP date has one-second resolution, rounded up: up to a second more.
        assert 0 <= info.value.retry_after <= sim.faults.retry_after + 1.0


async def test_html_page_has_excerpt(sim: Simulator) -> None:
    """A proxy's HTML page keeps its status and a short excerpt in the message."""
    sim.inject(FaultKind.HTML_PAGE, endpoint="list")
    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url, retry=RetryPolicy.no_retry())
    try:
        with pytest.raises(InternalServerError) as info:
            await client.list()
    finally:
        await client.aclose()
    assert info.value.status_code == 502
    assert "html" in info.value.message.lower()


async def test_one_hinted_429_delays_only_its_request(sim: Simulator) -> None:
    """A stray 429 with a hint is waited out by its own retry; the client's others go on."""
    sim.inject(FaultKind.RATE_LIMIT_SECONDS, endpoint="list")
    paused: list[float] = []

    async def on_event(event: object) -> None:
        if isinstance(event, RetryEvent):
            paused.append(client.gate.paused_for)

    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url, retry=FAST, on_event=on_event)
    try:
        await client.list()
    finally:
        await client.aclose()
    assert paused == [0.0]


async def test_body_cap(sim: Simulator) -> None:
    """A body over its cap is refused instead of read into memory; the list has its own cap."""
    job_id = sim.add_jobs(50)[0]
    client = FineTunesAPI(
        api_key=KEY,
        base_url=sim.base_url,
        retry=RetryPolicy.no_retry(),
        max_body_size=1000,
        max_list_body_size=2000,
    )
    try:
        with pytest.raises(InvalidResponseError, match="exceeds the 1000 byte cap"):
            await client.retrieve(job_id)
        with pytest.raises(InvalidResponseError, match="exceeds the 2000 byte cap"):
            await client.list()
    finally:
        await client.aclose()


async def test_list_changes_keeps_only_moved_jobs(sim: Simulator, api: FineTunesAPI) -> None:
    """Polling the list structures only watched jobs whose status moved, and says which it saw."""
    ids = sim.add_jobs(20, statuses=("running",))
    sim.set_status(ids[7], "completed")
    known: dict[str, str | None] = {ids[3]: "running", ids[7]: "running", ids[9]: None}
    known["ft-not-there"] = "running"
    (changed, mentioned, size), _ = await api.list_changes(known)
    assert size == 20
    assert mentioned == {ids[3], ids[7], ids[9]}
    assert sorted(changed) == sorted([ids[7], ids[9]])
    completed = changed[ids[7]]
    assert isinstance(completed, FineTuneJob)
    assert completed.status == "completed"
    assert completed.training_type is not None


async def test_connection_refused() -> None:
    """Nothing listening is a connection error, after the retries."""
    client = FineTunesAPI(api_key=KEY, base_url="http://127.0.0.1:9/v1", retry=FAST)
    try:
        with pytest.raises(APIConnectionError):
            await client.list()
    finally:
        await client.aclose()


async def test_callers_session_is_left_open(sim: Simulator) -> None:
    """A session passed in is used and never closed by the client."""
    async with aiohttp.ClientSession() as session:
        client = FineTunesAPI(api_key=KEY, base_url=sim.base_url, session=session)
        assert await client.list() == []
        await client.aclose()
        assert not session.closed


async def test_closed_client_refuses_calls(sim: Simulator) -> None:
    """Using a closed client is a RuntimeError, outside the error tree."""
    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.list()


async def test_environment_proxy_is_ignored(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxy settings in the environment are not picked up."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url, retry=RetryPolicy.no_retry())
    try:
        assert await client.list() == []
    finally:
        await client.aclose()


async def test_redirects_are_not_followed(serve_app: ServeApp) -> None:
    """A redirect is an error; the key never travels to the place it points at."""
    seen: list[str | None] = []

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/elsewhere/v1/fine-tunes")

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_get("/v1/fine-tunes", redirect)
    app.router.add_get("/elsewhere/v1/fine-tunes", elsewhere)
    async with serve_app(app) as url:
        client = FineTunesAPI(api_key=KEY, base_url=url, retry=FAST)
        try:
            with pytest.raises(FinetuneOpsError, match="redirect"):
                await client.list()
        finally:
            await client.aclose()
    assert seen == []


def test_plain_http_refused_off_loopback() -> None:
    """Plain http to another host is refused unless asked for."""
    with pytest.raises(ValueError, match="plain http"):
        FineTunesAPI(api_key=KEY, base_url="http://api.example.com/v1")
    client = FineTunesAPI(
        api_key=KEY, base_url="http://api.example.com/v1", allow_insecure_http=True
    )
    assert client.base_url == "http://api.example.com/v1"


@pytest.mark.parametrize(
    "url", ["https://user:pw@api.together.ai/v1", "https://h/v1?x=1", "ftp://h/v1", "nonsense"]
)
def test_bad_base_urls(url: str) -> None:
    """Credentials in the URL, queries and other schemes are refused."""
    with pytest.raises(ValueError, match="base URL"):
        FineTunesAPI(api_key=KEY, base_url=url)


def test_base_url_gets_v1() -> None:
    """The /v1 suffix is added when missing and kept when present."""
    assert FineTunesAPI(base_url="https://api.together.ai").base_url == (
        "https://api.together.ai/v1"
    )
    assert FineTunesAPI(base_url="https://api.together.ai/v1/").base_url == (
        "https://api.together.ai/v1"
    )


async def test_key_never_logged(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    """Retries and errors are logged without the key, even at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="finetune_ops")
    sim.inject(FaultKind.SERVER_ERROR_500, endpoint="list", times=2)
    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url, retry=FAST)
    try:
        await client.list()
        with pytest.raises(NotFoundError):
            await client.retrieve("ft-missing")
    finally:
        await client.aclose()
    assert caplog.records
    assert all(KEY not in record.getMessage() for record in caplog.records)
    assert KEY not in repr(client)


@pytest.mark.parametrize(
    ("body", "listing", "expected"),
    [
        ({"id": "ft-x"}, False, "required field missing @ $.status"),
        ({"id": "ft-x", "status": 3}, False, "$.status"),
        ([1, 2], False, "expected an object"),
        ({"data": "nope"}, True, "'data' is not a list of jobs"),
    ],
)
async def test_wrongly_shaped_json_is_invalid_response(
    serve_app: ServeApp, body: object, listing: bool, expected: str
) -> None:
    """JSON of the wrong shape is an InvalidResponseError naming where it went wrong."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/v1/fine-tunes/{id}", answer)
    app.router.add_get("/v1/fine-tunes", answer)
    async with serve_app(app) as url:
        client = FineTunesAPI(base_url=url, retry=FAST)
        call = client.list() if listing else client.retrieve("ft-x")
        try:
            with pytest.raises(InvalidResponseError, match=re.escape(expected)):
                await call
        finally:
            await client.aclose()


async def test_list_changes_refuses_a_list_without_data(serve_app: ServeApp) -> None:
    """A list body without its 'data' array is an InvalidResponseError, like any bad body."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"jobs": []})

    app = web.Application()
    app.router.add_get("/v1/fine-tunes", answer)
    async with serve_app(app) as url:
        client = FineTunesAPI(base_url=url, retry=RetryPolicy.no_retry())
        try:
            with pytest.raises(InvalidResponseError, match="'data' list"):
                await client.list_changes({"ft-a": None})
        finally:
            await client.aclose()


async def test_no_connection_leaks_after_giving_up(sim: Simulator) -> None:
    """After retries give up, the connection is back in the pool: the next call still runs.

    With one connection allowed, a leaked one would make the next call wait for
    a connection until its connect timeout.
    """
    job_id = sim.add_job("running")
    sim.inject(FaultKind.RESET, endpoint="retrieve", times=3)
    client = FineTunesAPI(
        api_key=KEY,
        base_url=sim.base_url,
        retry=RetryPolicy(attempts=3, wait_initial=0, wait_max=0, wait_jitter=0),
        max_concurrency=1,
        timeouts=Timeouts(connect=0.5, request=2),
    )
    try:
        with pytest.raises(APIConnectionError):
            await client.retrieve(job_id)
        sim.inject(FaultKind.SERVER_ERROR_500, endpoint="retrieve", times=3)
        with pytest.raises(InternalServerError):
            await client.retrieve(job_id)
        assert (await client.retrieve(job_id)).id == job_id
    finally:
        await client.aclose()


async def test_cancelled_during_a_long_retry_after(sim: Simulator) -> None:
    """Cancelling a call that waits out a long Retry-After ends it at once; nothing more is sent."""
    job_id = sim.add_job("running")
    sim.faults = FaultPlan(retry_after=30)
    sim.inject(FaultKind.RATE_LIMIT_SECONDS, endpoint="cancel")
    client = FineTunesAPI(api_key=KEY, base_url=sim.base_url)
    try:
        task = asyncio.create_task(client.cancel(job_id))
        while sim.counters["cancel"] < 1:  # noqa: ASYNC110 - the counter lives in the server
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)
        assert sim.counters["cancel"] == 1
        assert sim.status(job_id) == "running"
    finally:
        await client.aclose()


async def test_bad_chunked_encoding_is_a_connection_error() -> None:
    """A broken chunked body is a connection error (retried), not a crash."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = FineTunesAPI(base_url=f"http://127.0.0.1:{port}", retry=RetryPolicy.no_retry())
    try:
        with pytest.raises(APIConnectionError):
            await client.list()
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
