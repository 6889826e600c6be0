"""finetune_ops: one ``cancel_many(..., wait=True)`` call."""

from __future__ import annotations

from collections import Counter

# finetune_ops loads its modules on first use: load them now, with the other clients'
# imports, so that the measured run does not count them.
from finetune_ops import JobManager, PollPolicy

from . import Outcome, Settings


async def run(ids: list[str], settings: Settings) -> Outcome:
    poll = PollPolicy(
        interval=settings.poll_interval,
        growth=1.0,
        max_interval=settings.poll_interval,
        jitter=0.0,
        timeout=settings.timeout,
    )
    async with JobManager(
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
