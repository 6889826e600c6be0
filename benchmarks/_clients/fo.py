"""finetune_ops: one ``cancel_many(..., wait=True)`` call."""

from __future__ import annotations

from collections import Counter

import finetune_ops as fo

from . import Outcome, Settings


async def run(ids: list[str], settings: Settings) -> Outcome:
    poll = fo.PollPolicy(
        interval=settings.poll_interval,
        growth=1.0,
        max_interval=settings.poll_interval,
        jitter=0.0,
        timeout=settings.timeout,
    )
    async with fo.JobManager(
        base_url=settings.base_url,
        api_key=settings.api_key,
        max_concurrency=settings.concurrency,
        poll=poll,
    ) as jobs:
        report = await jobs.cancel_many(ids, wait=True)
    terminal = sum(
        1 for result in report.results if result.job is not None and result.job.status.is_terminal
    )
    errors = Counter(type(result.error).__name__ for result in report.failed)
    return Outcome(terminal=terminal, errors=dict(errors))
