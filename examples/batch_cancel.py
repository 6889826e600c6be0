"""Cancel a batch of jobs, wait until each one has ended, and print the report.

    python examples/batch_cancel.py ft-... ft-...        # the API in TOGETHER_BASE_URL
    python examples/batch_cancel.py --from-file ids.txt
    python examples/batch_cancel.py --simulate           # 50 simulated jobs, 5% faults

Each job is printed the moment it has its result; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import finetune_ops as fo

from _simulated import simulated_jobs


def show(event: fo.Event) -> None:
    """Print each job's result as soon as it has one."""
    if isinstance(event, fo.JobFinished):
        result = event.result
        outcome = result.status if result.ok else f"FAILED {result.error}"
        print(f"{result.job_id}: {outcome}", flush=True)


async def cancel_all(ids: list[str], *, base_url: str | None = None) -> fo.CancelReport:
    """Cancel every job and wait, at most 15 minutes, until each one is terminal."""
    async with fo.JobManager(base_url=base_url, max_concurrency=64, on_event=show) as jobs:
        return await jobs.cancel_many(ids, wait=True, timeout=900)


def summarize(report: fo.CancelReport) -> int:
    """Print the counts and the failures; return the exit status."""
    print(f"{len(report)} jobs: {report.by_status}")
    if report.failed:
        print(f"{len(report.failed)} failed: {report.by_error}")
        for result in report.failed:
            print(f"  {result.job_id}: {result.error}")
    return 0 if report.all_ok else 1


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", metavar="ID")
    parser.add_argument("--from-file", type=Path, help="also read ids from this file, one a line")
    parser.add_argument("--simulate", action="store_true", help="run against a simulated API")
    args = parser.parse_args()
    ids = list(args.ids)
    if args.from_file is not None:
        ids += [line.strip() for line in args.from_file.read_text().splitlines() if line.strip()]
    if args.simulate:
        async with simulated_jobs(50, fault_rate=0.05) as (base_url, simulated_ids):
            return summarize(await cancel_all(simulated_ids, base_url=base_url))
    if not ids:
        parser.error("give job ids, --from-file or --simulate")
    return summarize(await cancel_all(ids))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
