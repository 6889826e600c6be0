"""Calls a user would write, checked by mypy --strict and never run.

If a public signature changes in a way that breaks these, the type check fails.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from datetime import timedelta

import aiohttp

import finetune_ops as fo


async def service(session: aiohttp.ClientSession) -> fo.FineTuneJob:
    async with fo.JobManager(session=session, max_concurrency=64) as jobs:
        job: fo.FineTuneJob = await jobs.cancel("ft-abc", wait=True, timeout=timedelta(minutes=5))
        status: fo.JobStatus = job.status
        terminal: bool = status.is_terminal
        del terminal
        return await jobs.wait("ft-abc", timeout=600)


async def batch(ids: list[str]) -> int:
    def on_event(event: fo.Event) -> None:
        if isinstance(event, fo.JobFinished):
            result: fo.CancelResult = event.result
            del result

    async with fo.JobManager(
        retry=fo.RetryPolicy(attempts=3, deadline=30),
        poll=fo.PollPolicy(interval=2.0, timeout=timedelta(hours=1)),
        timeouts=fo.Timeouts(connect=2, request=10),
        max_requests_per_second=50,
        on_event=on_event,
    ) as jobs:
        report: fo.CancelReport = await jobs.cancel_many(ids, wait=True)
        async with aclosing(jobs.cancel_iter(ids)) as results:
            async for item in results:
                ok: bool = item.ok
                error: fo.FinetuneOpsError | None = item.error
                del ok, error
        waited: fo.CancelReport = await jobs.wait_many(ids, timeout=60.0)
        del waited
        report.raise_for_failures()
        return len(report.failed)


async def one_shot() -> None:
    async def on_event(event: fo.Event) -> None:
        await asyncio.sleep(0)

    async with fo.JobManager(api_key="k", on_event=on_event) as jobs:
        jobs_list: list[fo.FineTuneJob] = await jobs.list()
        events: tuple[fo.FineTuneEvent, ...] = await jobs.events("ft-abc")
        full: fo.FineTuneJob = await jobs.retrieve("ft-abc")
        del jobs_list, events, full
    try:
        pass
    except fo.RateLimitError as error:
        after: float | None = error.retry_after
        del after
    except fo.WaitTimeoutError as error:
        last: fo.FineTuneJob | None = error.job
        del last
