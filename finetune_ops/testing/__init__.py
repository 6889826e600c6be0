"""A simulated Together AI fine-tunes API, for tests, benchmarks and demos.

`Simulator` serves every fine-tunes operation of the public API under `/v1`
on a real loopback TCP port: create, list, retrieve, cancel, events, delete,
checkpoints, metrics, the model download (`/finetune/download`, a small
generated archive), models/supported, models/limits and estimate-price, plus
`GET /v3/whoami`. Jobs move through their lifecycle on a clock you control,
and a seeded plan of faults decides which requests fail::

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

What the answers hold, where the spec leaves room:

* A created job carries the request's settings; what it leaves out takes the
  spec's defaults, and `batch_size: "max"` (the default) the model's largest
  batch for the training type and method (see `GET /fine-tunes/models/limits`).
  Unsupported models and malformed settings get a 400.
* `total_price` is in nanodollars (1e-9 US dollars), the unit the official
  SDKs read it in: a $6.18 job says 6180000000. The estimate-price answer is
  in dollars, as the SDKs print it.
* `api_keys={"key-a": "team-a", "key-b": "team-b"}` gives jobs owners: another
  project's job answers 404, as an unknown id (the spec documents no 403).
* Deleting a job that has not finished is refused with a 400
  (`job_not_deletable`); the spec documents only 200 and 404 for delete.
* Unknown paths under `/v1/fine-tunes/` answer a 404 in the API's error shape,
  and a wrong method a 405 with `Allow`: a word such as `estimate-price` is
  never looked up as a job id.

Base URLs: finetune-ops and together SDK 1.x take `http://HOST:PORT/v1`;
together SDK 3.x adds `/v1` itself, so it takes `http://HOST:PORT`.
`python -m finetune_ops.testing` prints both. Synchronous clients (the SDKs'
`Together()`) need the server on another thread: `Simulator.serve_in_thread()`.

Every request that reaches an endpoint is counted in `Simulator.counters`,
faulted or refused (401) ones included, and every injected fault is logged in
`Simulator.fault_log`. The simulator imports nothing else from `finetune_ops`
and needs only aiohttp and attrs, except `NO_WAIT_RETRY`: finetune_ops' own
retry policy without its waits, for tests of code that uses the library. Run it
as a server with `python -m finetune_ops.testing --port 8080`, or in pytest
through the `finetune_ops.testing.pytest_plugin` plugin (the `testing` extra).
"""

from ._clock import Clock, ManualClock, RealClock
from ._faults import ENDPOINTS, FaultKind, FaultPlan, FaultRecord
from ._lifecycle import Lifecycle
from ._no_wait import NO_WAIT_RETRY
from ._ratelimit import RateLimit, Window
from ._simulator import Simulator

__all__ = [
    "ENDPOINTS",
    "NO_WAIT_RETRY",
    "Clock",
    "FaultKind",
    "FaultPlan",
    "FaultRecord",
    "Lifecycle",
    "ManualClock",
    "RateLimit",
    "RealClock",
    "Simulator",
    "Window",
]
