"""The simulator for DAG runs: ``python serve_simulator.py [KEY]`` prints its URL and serves.

``python -m finetune_ops.testing`` keeps its jobs active for an hour on
purpose; a DAG run wants a fine-tuning job to complete in seconds, and the
jobs of an abandoned sweep to keep running until someone cancels them. This
serves one such simulator until SIGTERM or SIGINT; `serve_in_thread` does the
same for a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator

from finetune_ops.testing import Lifecycle, Simulator

#: Seconds per stage: a job created now completes in about four seconds.
FAST = Lifecycle(
    pending=0.5, queued=0.5, running=2.0, compressing=0.5, uploading=0.5, cancel_delay=0.5
)
SWEEP = "sweep-a"


def fast_simulator(*, api_key: str | None = None) -> Simulator:
    """Fast jobs, and four of the sweep ``sweep-a``: three active, one completed."""
    sim = Simulator(api_key=api_key, lifecycle=FAST)
    for status in ("queued", "running", "running", "completed"):
        sim.add_job(status, suffix=SWEEP)
    return sim


async def _keep_the_sweep_running(sim: Simulator) -> None:
    """The sweep's active jobs stay running however long Airflow takes to start, until cancelled."""
    sweep = [job_id for job_id in sim.job_ids() if sim.job(job_id).get("suffix") == SWEEP]
    while True:
        for job_id in sweep:
            if sim.status(job_id) in ("running", "compressing", "uploading"):
                sim.set_status(job_id, "running")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def serve(sim: Simulator) -> AsyncIterator[str]:
    """Serve `sim` on this loop, keeping its sweep running; yield the base URL."""
    async with sim.serve() as base_url:
        keeper = asyncio.ensure_future(_keep_the_sweep_running(sim))
        try:
            yield base_url
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


@contextlib.contextmanager
def serve_in_thread(sim: Simulator) -> Iterator[str]:
    """`serve` on a loop of its own in a thread, for code that blocks (Airflow's dag.test)."""
    ready, done = threading.Event(), threading.Event()
    url: list[str] = []

    async def run() -> None:
        async with serve(sim) as base_url:
            url.append(base_url)
            ready.set()
            await asyncio.to_thread(done.wait)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield url[0]
    finally:
        done.set()
        thread.join()


async def _main(api_key: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(fast_simulator(api_key=api_key)) as base_url:
        print(base_url, flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1] if len(sys.argv) > 1 else None))
