"""One client run in a process of its own, so that its CPU time and peak RSS are its own.

``python -m benchmarks._runner --client NAME --base-url URL --ids IDS --out OUT``
imports the client, reads the job ids, then measures wall time and CPU time
(``getrusage``, user + system) around ``asyncio.run`` of the client alone:
interpreter start-up, imports and reading the ids are outside the measured
span and reported apart. Peak RSS is the process's whole-life peak
(``ru_maxrss``, KiB on Linux). The figures go to OUT as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._config import API_KEY, CLIENTS, CONCURRENCY, POLL_INTERVAL, client_timeout


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._runner")
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    return parser


def _run(main: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ._clients import Settings, load

    client = load(args.client)
    ids = args.ids.read_text().split()
    settings = Settings(
        base_url=args.base_url,
        api_key=API_KEY,
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        timeout=client_timeout(len(ids)) if args.timeout is None else args.timeout,
    )
    setup_cpu = _cpu()
    start_wall, start_cpu = time.perf_counter(), _cpu()
    outcome = _run(client(ids, settings), args.uvloop)
    wall, cpu = time.perf_counter() - start_wall, _cpu() - start_cpu
    figures = {
        "client": args.client,
        "jobs": len(ids),
        "terminal": outcome.terminal,
        "errors": outcome.errors,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "setup_cpu_seconds": setup_cpu,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    args.out.write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
