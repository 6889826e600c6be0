"""The floor: the same protocol written directly on aiohttp, as little as it takes.

One session, a semaphore of ``concurrency``, one coroutine per job gathered at
once. Each job: POST cancel until it is answered (a 400 means "already over",
so move on to polling), then GET the job every ``poll_interval`` seconds until
its status is terminal. A failed request (a 5xx, a reset, a cut-off body) is
tried again after ``poll_interval`` seconds, a 429 after its Retry-After.
aiohttp itself re-sends a GET once after a reset.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp

from benchmarks._config import TERMINAL

from . import Outcome, Settings


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


async def run(ids: list[str], settings: Settings) -> Outcome:
    base = settings.base_url
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    interval = settings.poll_interval
    errors: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(settings.concurrency)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout
    connector = aiohttp.TCPConnector(limit=settings.concurrency)

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(job_id: str) -> bool:
            cancelled = False
            while loop.time() < deadline:
                if cancelled:
                    method, url = "GET", f"{base}/fine-tunes/{job_id}"
                else:
                    method, url = "POST", f"{base}/fine-tunes/{job_id}/cancel"
                try:
                    async with semaphore, session.request(method, url) as response:
                        status = response.status
                        body = await response.read()
                        hint = response.headers.get("Retry-After")
                    job = json.loads(body) if status == 200 else None
                except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                    errors[type(error).__name__] += 1
                    await asyncio.sleep(interval)
                    continue
                if job is not None:
                    if job["status"] in TERMINAL:
                        return True
                    cancelled = True
                    await asyncio.sleep(interval)
                elif status == 400 and not cancelled:
                    cancelled = True  # already over: look at it at once
                else:
                    errors[f"HTTP {status}"] += 1
                    await asyncio.sleep(_retry_after(hint, interval) if status == 429 else interval)
            return False

        done = await asyncio.gather(*(one(job_id) for job_id in ids))
    return Outcome(terminal=sum(done), errors=dict(errors))
