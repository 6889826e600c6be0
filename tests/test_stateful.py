"""A hypothesis state machine over JobManager: random jobs, faults, batches and cancellations.

Each step runs real HTTP against the simulator on one event loop kept for the
whole run. After every batch the invariants are checked: one result per unique
id, ok results agree with the simulator, and nothing runs once a call is over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from finetune_ops import (
    CancelReport,
    FinetuneOpsError,
    InvalidJobIdError,
    JobManager,
    NotFoundError,
    PollPolicy,
    RetryPolicy,
    Timeouts,
    WaitTimeoutError,
)
from finetune_ops.testing import FaultKind, FaultPlan, ManualClock, Simulator

TERMINAL = ("completed", "cancelled", "error", "user_error")
STATUSES = ("pending", "queued", "running", "completed", "cancelled", "error", "user_error")
# Kinds that resolve quickly: HANG waits for a timeout and an HTTP date rounds up to a second.
QUICK_FAULTS = tuple(k for k in FaultKind if k not in (FaultKind.HANG, FaultKind.RATE_LIMIT_DATE))
STUBBORN = RetryPolicy(attempts=25, wait_initial=0, wait_max=0, wait_jitter=0)


class ManagerMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.clock = ManualClock()
        self.sim = Simulator(clock=self.clock, faults=FaultPlan(retry_after=0))
        self.serving = self.sim.serve()
        url = self.runner.run(self.serving.__aenter__())
        self.manager = JobManager(
            base_url=url,
            retry=STUBBORN,
            poll=PollPolicy(interval=0.005, growth=1.0, jitter=0, batch_threshold=3),
            timeouts=Timeouts(request=5),
        )

    def teardown(self) -> None:
        try:
            self.runner.run(self.manager.aclose())
            self.runner.run(self.serving.__aexit__(None, None, None))
        finally:
            self.runner.close()

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    @rule(target=jobs, status=st.sampled_from((*STATUSES, "paused")))
    def add_job(self, status: str) -> str:
        return self.sim.add_job(status)

    @rule(
        rate=st.sampled_from((0.0, 0.1, 0.3)),
        kinds=st.lists(st.sampled_from(QUICK_FAULTS), min_size=1, max_size=4, unique=True),
        seed=st.integers(0, 1000),
    )
    def set_faults(self, rate: float, kinds: list[FaultKind], seed: int) -> None:
        self.sim.faults = FaultPlan(rate=rate, kinds=tuple(kinds), seed=seed, retry_after=0)

    @rule(seconds=st.sampled_from((0.5, 2.0, 10_000.0)))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: len(self.sim) > 0)
    @rule(
        picked=st.lists(jobs, max_size=8),
        extra=st.lists(st.sampled_from(("ft-../x", "ft-unknown-1", "", "ft-a?b")), max_size=2),
        wait=st.booleans(),
    )
    def cancel_many(self, picked: list[str], extra: list[str], wait: bool) -> None:
        ids = [*picked, *extra, *picked[:2]]
        before = {job_id: self.sim.status(job_id) for job_id in set(picked)}
        report: CancelReport = self.run(self.manager.cancel_many(ids, wait=wait, timeout=0.05))
        unique = list(dict.fromkeys(ids))
        assert [result.job_id for result in report] == unique
        for result in report:
            if result.job_id in extra:
                expected = InvalidJobIdError if result.job_id != "ft-unknown-1" else NotFoundError
                assert isinstance(result.error, expected)
                continue
            now = self.sim.status(result.job_id)
            if isinstance(result.error, WaitTimeoutError):
                # The deadline bounds cancels too: any job may run out of time, truthfully.
                if result.cancel_sent:
                    assert now in ("cancel_requested", "cancelled")
            elif before[result.job_id] in TERMINAL:
                assert result.ok
                assert not result.cancel_sent
                assert result.status == before[result.job_id] == now
            else:
                assert result.ok, result.error
                assert result.cancel_sent
                assert now in ("cancel_requested", "cancelled")
                if wait:
                    assert result.status == "cancelled"

    @precondition(lambda self: len(self.sim) > 0)
    @rule(picked=st.lists(jobs, min_size=1, max_size=8), steps=st.integers(0, 30))
    def caller_cancels(self, picked: list[str], steps: int) -> None:
        async def scenario() -> None:
            task = asyncio.create_task(self.manager.cancel_many(picked, wait=True, timeout=5))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                report = await task
            except asyncio.CancelledError:
                pass
            else:  # it finished before the cancellation arrived: still whole
                assert len(report) == len(set(picked))
                assert all(r.ok or isinstance(r.error, FinetuneOpsError) for r in report)
            sent = self.sim.total_requests
            for _ in range(3):
                await asyncio.sleep(0.01)
            assert self.sim.total_requests == sent
            assert not client_tasks(), client_tasks()

        self.run(scenario())

    @invariant()
    def no_task_left(self) -> None:
        async def tasks() -> list[asyncio.Task[Any]]:
            return client_tasks()

        assert self.run(tasks()) == []


def client_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still running other than the current one and the simulator's connection handlers."""
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and not task.get_coro().__qualname__.startswith("RequestHandler.")  # type: ignore[union-attr]
    ]


ManagerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestManagerMachine = ManagerMachine.TestCase
