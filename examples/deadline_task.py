"""An orchestration task (Airflow, Prefect, Dagster, Ray) that stops a sweep within a deadline.

    python examples/deadline_task.py ft-... ft-...            # the API in TOGETHER_BASE_URL
    python examples/deadline_task.py --simulate               # 20 simulated jobs
    python examples/deadline_task.py --simulate --abort-after 0.5

The task has its own deadline, and the wait inside it a shorter one, so jobs
still not terminal become WaitTimeoutError results instead of failing the whole
task. ``--abort-after`` cancels the task from outside, the way an orchestrator
does on a user abort or a worker shutdown: the batch stops with it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import finetune_ops as fo

from _simulated import simulated_jobs


async def stop_sweep(
    ids: list[str], *, deadline: float = 1800, base_url: str | None = None
) -> fo.CancelReport:
    """Cancel every job of the sweep and wait for each, all within ``deadline`` seconds."""
    poll = fo.PollPolicy(interval=2, max_interval=30)
    async with fo.JobManager(base_url=base_url, poll=poll) as jobs:
        async with asyncio.timeout(deadline):  # the task's own deadline
            # Leave a margin so a slow job ends as a result, not as the task's timeout.
            return await jobs.cancel_many(ids, wait=True, timeout=deadline * 0.8)


async def run(ids: list[str], *, base_url: str | None, abort_after: float | None) -> int:
    """Run the task as an orchestrator would, and say how it ended."""
    task = asyncio.create_task(stop_sweep(ids, base_url=base_url))
    if abort_after is not None:
        asyncio.get_running_loop().call_later(abort_after, task.cancel)
    try:
        report = await task
    except asyncio.CancelledError:
        print("The task was cancelled: its batch stopped with it, nothing runs on.")
        return 1
    print(f"{len(report)} jobs: {report.by_outcome}")
    for result in report.failed:
        last = result.status or "never seen"
        print(f"  {result.job_id}: {type(result.error).__name__} (last seen: {last})")
    return 0 if report.all_ok else 1


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", metavar="ID")
    parser.add_argument("--simulate", action="store_true", help="run against a simulated API")
    parser.add_argument("--abort-after", type=float, metavar="SECONDS", help="cancel the task")
    args = parser.parse_args()
    if args.simulate:
        async with simulated_jobs(20) as (base_url, simulated_ids):
            return await run(simulated_ids, base_url=base_url, abort_after=args.abort_after)
    if not args.ids:
        parser.error("give job ids or --simulate")
    return await run(args.ids, base_url=None, abort_after=args.abort_after)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
