"""The floor: the least a client can do for the same result.

One cancel POST per job with aiohttp and ``json.loads`` of the answer, nothing
else: no polling, no retries, the job's cancel answer is its result. A 400
("already over") counts as terminal too. It is the yardstick of client CPU per
job: no design of the library goes below one aiohttp request per job. Its jobs
end terminal on the simulator only because the cancel delay passes while it
runs; it waits for nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp

from . import Outcome, Settings


async def run(ids: list[str], settings: Settings) -> Outcome:
    base = settings.base_url
    errors: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(settings.concurrency)
    connector = aiohttp.TCPConnector(limit=settings.concurrency)
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(job_id: str) -> bool:
            try:
                async with semaphore, session.post(f"{base}/fine-tunes/{job_id}/cancel") as answer:
                    status = answer.status
                    body = await answer.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                return False
            if status == 200:
                json.loads(body)
                return True
            errors[f"HTTP {status}"] += 1
            return status == 400

        done = await asyncio.gather(*(one(job_id) for job_id in ids))
    return Outcome(terminal=sum(done), errors=dict(errors))
