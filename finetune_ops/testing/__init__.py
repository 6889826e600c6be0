"""A simulated Together AI fine-tunes API, for tests, benchmarks and demos.

`Simulator` serves the fine-tunes endpoints (create, list, retrieve, cancel,
events) under `/v1` on a real loopback TCP port, with jobs that move through
their lifecycle on a clock you control and a seeded plan of faults::

    sim = Simulator(clock=ManualClock(), faults=FaultPlan(rate=0.1, seed=7))
    ids = sim.add_jobs(1000)
    async with sim.serve() as base_url:   # "http://127.0.0.1:PORT/v1"
        ...                               # point a client at base_url
        sim.advance(5.0)

It imports nothing else from `finetune_ops`. Run it as a server with
`python -m finetune_ops.testing --port 8080`, or in pytest through the
`finetune_ops.testing.pytest_plugin` plugin. Fault semantics are described in
the `FaultKind` and `FaultPlan` docs: faults that answer with an error happen
before the request's effect; RESET and TRUNCATED_JSON happen after it.
"""

from ._clock import Clock, ManualClock, RealClock
from ._faults import FaultKind, FaultPlan, FaultRecord
from ._lifecycle import Lifecycle
from ._simulator import Simulator

__all__ = [
    "Clock",
    "FaultKind",
    "FaultPlan",
    "FaultRecord",
    "Lifecycle",
    "ManualClock",
    "RealClock",
    "Simulator",
]
