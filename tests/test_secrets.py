"""The key is unreachable from anything we hand out, and memory follows the bytes received."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

import attrs
import pytest
from aiohttp import web

from finetune_ops import (
    Event,
    FinetuneOpsError,
    InvalidResponseError,
    JobManager,
    PollPolicy,
    RetryPolicy,
    Timeouts,
)
from finetune_ops._api import REDACTED, FineTunesAPI
from finetune_ops.testing import FaultKind, Simulator

ServeApp = Callable[[web.Application], AbstractAsyncContextManager[str]]

KEY = "sk-live-7f3a9c1e5b2d-very-secret"
ONCE = RetryPolicy.no_retry()
FAST = RetryPolicy(wait_initial=0, wait_max=0, wait_jitter=0)
MB = 1024 * 1024


def reachable(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` the way error reporters walk one.

    Exceptions through ``__cause__``, ``__context__`` and ``args``; objects
    through ``__dict__``, their slots and attrs fields; containers through their
    items. Tracebacks (and the frames behind them) are not followed.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, str | bytes | bytearray | int | float):
            continue
        if isinstance(obj, BaseException):
            stack += [obj.__cause__, obj.__context__, *obj.args]
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            stack += list(obj)
        if hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack += list(vars(obj).values())
        for cls in type(obj).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                stack.append(getattr(obj, slot, None))
        if attrs.has(type(obj)):
            stack += [getattr(obj, field.name) for field in attrs.fields(type(obj))]


def assert_no_key(*roots: object) -> None:
    for root in roots:
        for obj in reachable(root):
            module = type(obj).__module__
            assert not module.startswith(("aiohttp", "yarl", "multidict")), (root, obj)
            if isinstance(obj, str | bytes | bytearray):
                text = obj if isinstance(obj, str) else bytes(obj).decode("latin-1")
                assert KEY not in text, (root, obj)
            else:
                assert KEY not in repr(obj), (root, obj)


# -- the key ------------------------------------------------------------------


@pytest.mark.parametrize("kind", [kind for kind in FaultKind if kind != FaultKind.LATENCY])
async def test_no_error_of_any_fault_reaches_the_key(kind: FaultKind) -> None:
    """Whatever the fault, nothing reachable from the error carries the key."""
    sim = Simulator(api_key=KEY)
    job_id = sim.add_job("running")
    async with sim.serve() as url:
        client = FineTunesAPI(api_key=KEY, base_url=url, retry=ONCE, timeouts=Timeouts(request=0.3))
        try:
            for endpoint, call in (
                ("cancel", lambda: client.cancel(job_id)),
                ("retrieve", lambda: client.retrieve(job_id)),
                ("list", lambda: client.list()),
            ):
                sim.inject(kind, endpoint=endpoint)
                with pytest.raises(FinetuneOpsError) as info:
                    await call()
                assert_no_key(info.value)
        finally:
            await client.aclose()
        assert client._budget.held == 0  # every byte taken was given back


async def test_no_status_error_reaches_the_key() -> None:
    """401, 400 and 404 errors, with a wrong key or the right one, carry neither."""
    sim = Simulator(api_key="sk-other-key-000")
    done = sim.add_job("completed")
    async with sim.serve() as url:
        for key in (KEY, "sk-other-key-000"):
            client = FineTunesAPI(api_key=key, base_url=url, retry=ONCE)
            try:
                for call in (client.cancel(done), client.retrieve("ft-none"), client.list()):
                    with contextlib.suppress(FinetuneOpsError):
                        await call
                    with pytest.raises(FinetuneOpsError) as info:
                        await client.cancel("ft-none")
                    assert_no_key(info.value)
            finally:
                await client.aclose()


@contextlib.asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[str]:
    """A TCP server that answers every request with ``answer`` bytes and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"id"',
    ],
    ids=["bad-length", "bad-status", "not-http", "cut-short"],
)
async def test_a_malformed_answer_leaves_no_path_to_the_key(answer: bytes) -> None:
    """After a malformed response head, neither the error nor its context holds the request."""
    async with raw_server(answer) as url:
        client = FineTunesAPI(api_key=KEY, base_url=url, retry=ONCE)
        try:
            with pytest.raises(FinetuneOpsError) as info:
                await client.retrieve("ft-a")
        finally:
            await client.aclose()
    assert info.value.__context__ is None
    assert_no_key(info.value)


async def test_a_key_echoed_by_the_server_is_redacted(
    serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing the key into messages, fields and bodies: replaced everywhere."""
    caplog.set_level(logging.DEBUG, logger="finetune_ops")

    def echo(request: web.Request) -> str:
        return request.headers["Authorization"]

    async def cancel(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["id"]
        if job_id == "ft-html":
            return web.Response(text=f"<html>{echo(request)}</html>", content_type="text/html")
        error = {"message": f"key {echo(request)} rejected", "type": echo(request)}
        return web.json_response({"error": error}, status=500 if job_id == "ft-5xx" else 400)

    async def retrieve(request: web.Request) -> web.StreamResponse:
        error = {"message": f"not allowed for {echo(request)}"}
        return web.json_response({"error": error}, status=403)

    app = web.Application()
    app.router.add_post("/v1/fine-tunes/{id}/cancel", cancel)
    app.router.add_get("/v1/fine-tunes/{id}", retrieve)
    heard: list[Event] = []
    async with (
        serve_app(app) as url,
        JobManager(
            api_key=KEY,
            base_url=url,
            retry=FAST,
            poll=PollPolicy(interval=0.01),
            on_event=heard.append,
        ) as jobs,
    ):
        report = await jobs.cancel_many(["ft-html", "ft-5xx", "ft-400"])
    assert not report.all_ok
    assert_no_key(report, heard, caplog.records)
    messages = " ".join(str(result.error) for result in report)
    assert REDACTED in messages
    assert "Bearer" in messages  # the rest of what the server said is kept


async def test_a_batch_under_every_fault_leaves_no_key(caplog: pytest.LogCaptureFixture) -> None:
    """Results, the report, events and log records of a faulty batch carry no key."""
    from finetune_ops.testing import FaultPlan

    caplog.set_level(logging.DEBUG, logger="finetune_ops")
    plan = FaultPlan(rate=0.5, kinds=tuple(k for k in FaultKind if k != FaultKind.HANG), seed=3)
    sim = Simulator(api_key=KEY, faults=plan)
    ids = sim.add_jobs(40)
    heard: list[Event] = []
    async with (
        sim.serve() as url,
        JobManager(
            api_key=KEY,
            base_url=url,
            retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0),
            poll=PollPolicy(interval=0.01, growth=1.0),
            on_event=heard.append,
        ) as jobs,
    ):
        report = await jobs.cancel_many([*ids, "ft-unknown"], wait=True, timeout=2)
    assert report.failed
    assert_no_key(report, heard, caplog.records)


# -- memory -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def stalling_server(declared: int, sent: int) -> AsyncIterator[tuple[str, list[int]]]:
    """Answers declaring ``declared`` bytes, sending ``sent``, then nothing until closed."""
    stalled: list[int] = []
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (declared, b" " * sent)
            )
            await writer.drain()
            stalled.append(sent)
            await release.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", stalled
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_stalled_answers_hold_what_they_sent() -> None:
    """16 answers declaring 60 MB each and sending 100 bytes hold about nothing."""
    async with stalling_server(declared=60_000_000, sent=100) as (url, stalled):
        client = FineTunesAPI(base_url=url, retry=ONCE, max_concurrency=16)
        gc.collect()
        tracemalloc.start()
        try:
            tasks = [asyncio.create_task(client.retrieve(f"ft-{i}")) for i in range(16)]
            while len(stalled) < 16:  # noqa: ASYNC110 - the count lives in the server
                await asyncio.sleep(0.005)
            for _ in range(20):
                await asyncio.sleep(0.005)  # let the bytes that were sent arrive
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
    assert peak < 20 * MB, f"{peak / MB:.0f} MB held for 1,600 bytes received"


def _gzip_of_an_open_list(size: int) -> bytes:
    """A list answer that opens its ``data`` array, then goes on with blanks: valid so far."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    block = b" " * MB
    parts = [packer.compress(b'{"data": [')]
    parts += [packer.compress(block) for _ in range(size // MB)]
    return b"".join([*parts, packer.flush()])


async def test_the_cap_holds_after_decompression(serve_app: ServeApp) -> None:
    """A small gzip body that inflates far past the cap is refused at the cap, not after."""
    bomb = _gzip_of_an_open_list(200 * MB)

    async def listing(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb, content_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    app = web.Application()
    app.router.add_get("/v1/fine-tunes", listing)
    async with serve_app(app) as url:
        client = FineTunesAPI(base_url=url, retry=ONCE, max_list_body_size=16 * MB)
        gc.collect()
        tracemalloc.start()
        try:
            with pytest.raises(InvalidResponseError, match="cap") as info:
                await client.list()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await client.aclose()
    assert not info.value.transient
    assert peak < 64 * MB, f"{peak / MB:.0f} MB held under a 16 MB cap"


async def test_the_manager_budget_bounds_every_body(serve_app: ServeApp) -> None:
    """No answer holds more than max_buffered_bytes, whatever its own cap allows."""

    async def big(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "ft-a", "status": "running", "pad": "x" * 300_000})

    app = web.Application()
    app.router.add_get("/v1/fine-tunes/{id}", big)
    async with serve_app(app) as url:
        client = FineTunesAPI(base_url=url, retry=FAST, max_buffered_bytes=100_000)
        try:
            with pytest.raises(InvalidResponseError, match="cap") as info:
                await client.retrieve("ft-a")
        finally:
            await client.aclose()
        assert client._budget.held == 0
    assert not info.value.transient
    with pytest.raises(ValueError, match="max_buffered_bytes"):
        JobManager(max_buffered_bytes=0)
