"""The simulator as a process of its own, preloaded for one client run.

``python -m benchmarks._server --jobs N --ids-out IDS --stats-out STATS`` preloads
N active jobs, writes their ids (one a line) to IDS, serves the simulated API,
and prints one JSON line ``{"base_url": ...}`` once it accepts requests. On
SIGTERM or SIGINT it stops, then writes STATS: the request counters by
endpoint, the injected faults by kind, how many of the preloaded jobs are
terminal, and the simulator's own CPU time. It runs on uvloop when available
(only the server: the clients' loop is chosen separately), so that the
simulator is as little of a bottleneck as the two cores allow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
from collections import Counter
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from finetune_ops.testing import FaultKind, FaultPlan, Lifecycle, RateLimit, Simulator

from ._config import CANCEL_DELAY, FAULT_KINDS, LATENCY, SEED, TERMINAL
from ._recorder import Recorder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._server")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", default=",".join(FAULT_KINDS))
    parser.add_argument("--latency", type=float, default=LATENCY)
    parser.add_argument("--cancel-delay", type=float, default=CANCEL_DELAY)
    parser.add_argument("--ids-out", type=Path, required=True)
    parser.add_argument("--stats-out", type=Path, required=True)
    parser.add_argument("--rate", type=int, default=0, help="requests per second; 0: no limit")
    parser.add_argument(
        "--schedule", default="", help="budget changes: 'AT:BUDGET,...' (seconds, req/s)"
    )
    parser.add_argument("--outage-at", type=float, default=0.0)
    parser.add_argument("--outage-for", type=float, default=0.0)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument(
        "--finished", type=int, default=0, help="completed jobs listed before the N active ones"
    )
    return parser


def _stats(
    sim: Simulator, ids: list[str], recorder: Recorder, limit: RateLimit | None
) -> dict[str, Any]:
    statuses = Counter(sim.status(job_id) for job_id in ids)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "counters": dict(sim.counters),
        "faults": dict(Counter(str(record.kind) for record in sim.fault_log)),
        "statuses": dict(statuses),
        "terminal": sum(count for status, count in statuses.items() if status in TERMINAL),
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_kib": usage.ru_maxrss,
        "recorded": recorder.stats(None if limit is None else limit.budget_at),
    }


async def _serve(
    sim: Simulator, ids: list[str], recorder: Recorder, limit: RateLimit | None
) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    app = sim.make_app()
    app.middlewares.insert(0, recorder.middleware)  # outermost: it sees every answer
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        print(json.dumps({"base_url": f"http://127.0.0.1:{port}/v1", "jobs": len(ids)}), flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return _stats(sim, ids, recorder, limit)


def _run(main: Coroutine[Any, Any, dict[str, Any]], loop_name: str) -> dict[str, Any]:
    if loop_name != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop_name == "uvloop":
                raise
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kinds = tuple(FaultKind(kind) for kind in args.fault_kinds.split(",") if kind)
    schedule = tuple(
        (float(at), int(budget))
        for at, budget in (part.split(":") for part in args.schedule.split(",") if part)
    )
    limit = RateLimit(requests=args.rate, schedule=schedule) if args.rate else None
    recorder = Recorder(outage_at=args.outage_at, outage_for=args.outage_for)
    sim = Simulator(
        lifecycle=Lifecycle(cancel_delay=args.cancel_delay),
        faults=FaultPlan(rate=args.fault_rate, kinds=kinds, seed=args.seed, latency=args.latency),
        rate_limit=limit,
        seed=args.seed,
    )
    sim.add_jobs(args.finished, statuses=("completed",))
    ids = sim.add_jobs(args.jobs)
    args.ids_out.write_text("\n".join(ids) + "\n")
    stats = _run(_serve(sim, ids, recorder, limit), args.loop)
    args.stats_out.write_text(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
