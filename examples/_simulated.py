"""``--simulate`` for the examples: a simulated fine-tunes API with running jobs, in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from finetune_ops.testing import FaultPlan, Lifecycle, Simulator


@contextlib.asynccontextmanager
async def simulated_jobs(
    count: int, *, cancel_delay: float = 1.0, fault_rate: float = 0.0
) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve a simulator with ``count`` running jobs; yield its base URL and the job ids."""
    sim = Simulator(
        lifecycle=Lifecycle(cancel_delay=cancel_delay),
        faults=FaultPlan(rate=fault_rate, seed=1),
        seed=1,
    )
    ids = sim.add_jobs(count, statuses=("running",))
    async with sim.serve() as base_url:
        yield base_url, ids
