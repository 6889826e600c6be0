"""A simulated Together AI fine-tunes API, for tests, benchmarks and demos.

`Simulator` serves the fine-tunes endpoints (create, list, retrieve, cancel,
events) under `/v1` on a real loopback TCP port, with jobs that move through
their lifecycle on a clock you control and a seeded plan of faults::

    sim = Simulator(clock=ManualClock(), faults=FaultPlan(rate=0.1, seed=7))
    ids = sim.add_jobs(1000)
    async with sim.serve() as base_url:   # "http://127.0.0.1:PORT/v1"
        ...                               # point a client at base_url
        sim.advance(5.0)                  # jobs move on; cancels complete

When a fault strikes relative to what the request does:

* before the effect, so nothing changes on the server: every 429 form, the
  5xx statuses, HTML_PAGE, EMPTY_BODY and HANG (a cancel that got a 503 was
  not applied; a create that got a 429 made no job);
* after the effect, so the server changed but the client cannot know: RESET
  and TRUNCATED_JSON (the cancel was applied, the job was created);
* LATENCY only delays a normal response.

Every request that reaches an endpoint is counted in `Simulator.counters`,
faulted or refused (401) ones included, and every injected fault is logged in
`Simulator.fault_log`. The package imports nothing else from `finetune_ops`
and needs only aiohttp and attrs. Run it as a server with
`python -m finetune_ops.testing --port 8080`, or in pytest through the
`finetune_ops.testing.pytest_plugin` plugin.
"""

from ._clock import Clock, ManualClock, RealClock
from ._faults import FaultKind, FaultPlan, FaultRecord
from ._lifecycle import Lifecycle
from ._ratelimit import RateLimit
from ._simulator import Simulator

__all__ = [
    "Clock",
    "FaultKind",
    "FaultPlan",
    "FaultRecord",
    "Lifecycle",
    "ManualClock",
    "RateLimit",
    "RealClock",
    "Simulator",
]
