"""The floor: the same protocol written directly on aiohttp, as little as it takes.

One session, a semaphore of ``concurrency``, one coroutine per job gathered at
once. Each job: POST cancel until it is answered (a 400 means "already over",
so move on to polling), then GET the job every ``poll_interval`` seconds until
its status is terminal. A failed request (a 429, a 5xx, a reset, a cut-off
body) is tried again as a careful user would: after the server's hint when it
gives one (Retry-After, or x-ratelimit-reset when x-ratelimit-remaining is 0),
else after an exponential backoff with jitter (0.05 s doubling up to 2 s),
reset by the job's next success. aiohttp itself re-sends a GET once after a
reset.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Mapping

import aiohttp

from benchmarks._config import TERMINAL

from . import Outcome, Settings

_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _hint(headers: Mapping[str, str]) -> float | None:
    """The server's own word on when to try again, if it gave one."""
    after = _seconds(headers.get("Retry-After"))
    if after is not None:
        return after
    if headers.get("x-ratelimit-remaining") == "0":
        return _seconds(headers.get("x-ratelimit-reset"))
    return None


def _backoff(failures: int) -> float:
    return random.uniform(0.5, 1.0) * min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1))


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
            failures = 0
            while loop.time() < deadline:
                if cancelled:
                    method, url = "GET", f"{base}/fine-tunes/{job_id}"
                else:
                    method, url = "POST", f"{base}/fine-tunes/{job_id}/cancel"
                try:
                    async with semaphore, session.request(method, url) as response:
                        status = response.status
                        body = await response.read()
                        hint = _hint(response.headers) if status >= 400 else None
                    job = json.loads(body) if status == 200 else None
                except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                    errors[type(error).__name__] += 1
                    failures += 1
                    await asyncio.sleep(_backoff(failures))
                    continue
                if job is not None:
                    failures = 0
                    if job["status"] in TERMINAL:
                        return True
                    cancelled = True
                    await asyncio.sleep(interval)
                elif status == 400 and not cancelled:
                    cancelled = True  # already over: look at it at once
                else:
                    errors[f"HTTP {status}"] += 1
                    failures += 1
                    await asyncio.sleep(hint if hint is not None else _backoff(failures))
            return False

        done = await asyncio.gather(*(one(job_id) for job_id in ids))
    return Outcome(terminal=sum(done), errors=dict(errors))
