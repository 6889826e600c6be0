"""What a batch keeps per job once the job has its result, counted in bytes with tracemalloc.

A 100,000-job batch pays every byte it keeps per job 100,000 times: once a job
has its result, the batch should hold little more than that result.
"""

from __future__ import annotations

import tracemalloc
from contextlib import aclosing
from pathlib import Path

import finetune_ops
from finetune_ops import CancelResult, JobManager, PollPolicy
from finetune_ops.testing import Lifecycle, Simulator

JOBS = 2_000
#: Where a batch's per-job state is made: a job's records and answers are made elsewhere.
_BATCH_FILES = ("_batch.py", "_ledger.py", "_poller.py", "_results.py", "_state.py", "_events.py")
#: A CancelResult (96 bytes), its elapsed float (24) and the id in the order of the report
#: (8), with room for tables sized by how many jobs were polled at once. Keeping each
#: job's entry to the end cost 320.
_BYTES_PER_JOB = 200


def _batch_bytes(snapshot: tracemalloc.Snapshot) -> int:
    package = Path(finetune_ops.__file__).parent
    filters = [tracemalloc.Filter(True, str(package / name)) for name in _BATCH_FILES]
    return sum(stat.size for stat in snapshot.filter_traces(filters).statistics("filename"))


async def test_a_finished_job_costs_the_batch_little_more_than_its_result() -> None:
    """At the last result, the batch's own allocations that are still alive stay under a bound.

    Entries, poll schedules and lists of ids are dropped as jobs finish; what is
    left is the results themselves, which the caller keeps here.
    """
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0.02))
    ids = sim.add_jobs(JOBS, statuses=("running",))
    poll = PollPolicy(interval=0.02, growth=1.0, jitter=0)
    kept: list[CancelResult] = []
    async with sim.serve() as url, JobManager(base_url=url, poll=poll, max_concurrency=4) as jobs:
        tracemalloc.start(1)
        try:
            async with aclosing(jobs.cancel_iter(ids, wait=True)) as results:
                async for result in results:
                    kept.append(result)
                    if len(kept) == JOBS:  # the batch is still alive, every job finished
                        snapshot = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    assert all(result.ok for result in kept)
    per_job = _batch_bytes(snapshot) / JOBS
    assert per_job < _BYTES_PER_JOB, f"{per_job:.0f} bytes per finished job"
