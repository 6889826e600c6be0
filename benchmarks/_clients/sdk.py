"""The peer: the official together SDK, written the way its docs lead a user to.

``AsyncTogether`` pointed at the simulator, ``asyncio.gather`` over every job,
a semaphore of ``concurrency`` around each call. Each job:
``client.fine_tuning.cancel(id=...)``, then ``client.fine_tuning.retrieve(id=...)``
every ``poll_interval`` seconds until the status is terminal. The SDK retries
on its own (2 retries by default, honouring Retry-After); what still fails is
tried again after ``poll_interval`` seconds, a 400 on cancel meaning "already
over".
"""

from __future__ import annotations

import asyncio
from collections import Counter

import together

from benchmarks._config import TERMINAL

from . import Outcome, Settings


async def run(ids: list[str], settings: Settings) -> Outcome:
    # The SDK's paths start with /v1; its base URL is the server root.
    root = settings.base_url.removesuffix("/v1")
    interval = settings.poll_interval
    errors: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(settings.concurrency)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout

    async with together.AsyncTogether(api_key=settings.api_key, base_url=root) as client:

        async def one(job_id: str) -> bool:
            cancelled = False
            while loop.time() < deadline:
                try:
                    async with semaphore:
                        if cancelled:
                            status = (await client.fine_tuning.retrieve(id=job_id)).status
                        else:
                            status = (await client.fine_tuning.cancel(id=job_id)).status
                except together.APIError as error:
                    if isinstance(error, together.BadRequestError) and not cancelled:
                        cancelled = True  # already over: look at it at once
                        continue
                    errors[type(error).__name__] += 1
                    await asyncio.sleep(interval)
                    continue
                if status in TERMINAL:
                    return True
                cancelled = True
                await asyncio.sleep(interval)
            return False

        done = await asyncio.gather(*(one(job_id) for job_id in ids))
    return Outcome(terminal=sum(done), errors=dict(errors))
