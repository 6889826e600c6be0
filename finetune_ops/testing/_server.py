"""Serving an aiohttp application over real TCP, for as long as a context lasts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

# Held requests are released on shutdown; this only bounds a misbehaving handler.
_SHUTDOWN_TIMEOUT = 5.0
_ACCEPT_TURNS = 4


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve `app` on host:port (0 picks a free port); yield "http://host:port".

    On exit the listening socket closes first, then the app's on_shutdown
    handlers run, then in-flight requests get a short grace period. Releasing
    held requests from on_shutdown (not earlier) matters: a client whose
    request is dropped may retry it at once, and that retry must find the port
    closed rather than race the shutdown.
    """
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield f"http://{_url_host(host)}:{bound_port}"
    finally:
        # A connection accepted just as the listening socket closes is leaked by
        # asyncio (3.11, 3.12); giving pending accepts a few loop turns to finish
        # first keeps a client that connects during shutdown from causing that.
        for _ in range(_ACCEPT_TURNS):
            await asyncio.sleep(0)
        await runner.cleanup()
