"""Large batches under injected faults: nothing is lost, and the books balance."""

from __future__ import annotations

from finetune_ops import FinetuneOpsError, JobManager, PollPolicy, RetryPolicy, Timeouts
from finetune_ops.testing import FaultKind, FaultPlan, Lifecycle, RateLimit, Simulator

FAST_RETRY = RetryPolicy(wait_initial=0.0, wait_max=0.0, wait_jitter=0.0, attempts=8)


async def test_two_thousand_jobs_under_every_fault() -> None:
    """2,000 jobs, ~20% faults of every kind: one result each, ok ones terminal, books balance."""
    plan = FaultPlan(rate=0.2, kinds=tuple(FaultKind), seed=7, retry_after=0.01, spike=0.05)
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0.05), faults=plan, seed=7)
    ids = sim.add_jobs(2000)
    finished_early = sim.add_jobs(50, statuses=("completed", "error", "user_error"))
    async with (
        sim.serve() as url,
        JobManager(
            base_url=url,
            max_concurrency=64,
            retry=FAST_RETRY,
            poll=PollPolicy(interval=0.05, growth=1.2, max_interval=0.2),
            timeouts=Timeouts(request=0.5),
        ) as jobs,
    ):
        report = await jobs.cancel_many([*ids, *finished_early], wait=True, timeout=300)

    assert [result.job_id for result in report] == [*ids, *finished_early]
    kinds_hit = {record.kind for record in sim.fault_log}
    assert kinds_hit == set(FaultKind)

    for result in report.ok:
        assert result.job is not None
        assert result.job.status.is_terminal
        assert sim.status(result.job_id) == result.status
    for result in report.failed:
        assert isinstance(result.error, FinetuneOpsError)
    assert len(report.failed) <= 10  # each would need 8 faults in a row

    cancelled_here = report.by_status.get("cancelled", 0)
    cancelled_there = sum(sim.status(job_id) == "cancelled" for job_id in ids)
    assert cancelled_here <= cancelled_there <= cancelled_here + len(report.failed)
    for job_id in finished_early:
        result = next(r for r in report if r.job_id == job_id)
        assert result.ok
        assert not result.cancel_sent
    # Every request the simulator saw for a job is an attempt some result counted.
    per_job = sum(result.attempts for result in report)
    assert per_job == sim.counters["cancel"] + sim.counters["retrieve"]


async def test_rate_limit_storm_costs_few_extra_requests() -> None:
    """Under a server rate limit, total requests stay close to the number of jobs.

    The limit admits 60 requests per 0.2 s window, so cancelling 400 jobs
    unpaced would make a 429 storm. Its answers say what is left of the budget
    (x-ratelimit-remaining, -reset), and the manager paces by them before any 429.
    """
    sim = Simulator(rate_limit=RateLimit(requests=60, per=0.2))
    ids = sim.add_jobs(400)
    async with sim.serve() as url, JobManager(base_url=url, max_concurrency=16) as jobs:
        report = await jobs.cancel_many(ids)
    assert report.all_ok
    assert sim.rate_limited <= 0.03 * len(ids)
    assert sim.counters["cancel"] <= 1.03 * len(ids)
