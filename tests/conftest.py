"""Leak guards for every test: no task left behind, no loop error logged, no warning."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

pytest_plugins = ["pytester", "finetune_ops.testing.pytest_plugin"]

if os.environ.get("FINETUNE_OPS_TEST_LOOP") == "uvloop":
    # The async tests run on uvloop instead (CI runs part of the suite so):
    # the library must not depend on details of asyncio's own loop.
    import uvloop

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
        return {"uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    """Fail a test that leaves a task running or makes the loop report an error.

    "Task was destroyed but it is pending" and "Task exception was never
    retrieved" are log records, not warnings, so the loop's exception handler is
    watched as well.

    A full collection finds what the test dropped in a reference cycle (a pending
    task, an unclosed session). Whatever survives it is then frozen out of later
    collections, so each test's collection scans only the objects made since the
    last one, at a fraction of the cost of rescanning the whole heap each time.
    (An object one test keeps alive and a later test drops in a cycle is not
    collected then; tests share no such objects.)
    """
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    yield
    for _ in range(3):  # let callbacks scheduled by closing transports run
        await asyncio.sleep(0)
    gc.collect()
    gc.freeze()
    leftover = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in leftover:
        task.cancel()
    if leftover:
        await asyncio.gather(*leftover, return_exceptions=True)
    loop.set_exception_handler(None)
    assert not leftover, f"tasks outlived the test: {leftover}"
    assert not reported, f"the event loop reported errors: {[c.get('message') for c in reported]}"


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def serve_app() -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[str]]:
    """Serve a hand-made aiohttp app on a loopback port: ``async with serve_app(app) as url``.

    For server behaviour the simulator does not have (redirects, odd bodies).
    """
    return _serve
