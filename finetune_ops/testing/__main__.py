"""Run the simulator as a server: `python -m finetune_ops.testing --port 8080`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ._faults import DEFAULT_KINDS, FaultKind, FaultPlan
from ._lifecycle import Lifecycle
from ._ratelimit import RateLimit
from ._simulator import Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune_ops.testing",
        description="Serve a simulated Together fine-tunes API until interrupted.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="preload N active jobs (pending, queued, running)"
    )
    parser.add_argument(
        "--api-key", default=None, help="require this bearer key (default: accept any or none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for ids, settings and faults")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests that get a fault (0-1)"
    )
    parser.add_argument(
        "--fault-kinds",
        default=None,
        help="comma-separated fault kinds to draw from (default: all but hang); "
        f"choose from {', '.join(kind.value for kind in FaultKind)}",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds of delay added to every request"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="admit N requests per --rate-window; refuse the rest with 429 (default: no limit)",
    )
    parser.add_argument(
        "--rate-window", type=float, default=1.0, help="seconds per rate-limit window"
    )
    parser.add_argument(
        "--cancel-delay",
        type=float,
        default=Lifecycle().cancel_delay,
        help="seconds from cancel_requested to cancelled (default: %(default)s)",
    )
    return parser


def _simulator(args: argparse.Namespace) -> Simulator:
    if args.jobs < 0:
        raise ValueError("--jobs must be >= 0")
    kinds = DEFAULT_KINDS
    if args.fault_kinds:
        kinds = tuple(
            FaultKind(part.strip()) for part in args.fault_kinds.split(",") if part.strip()
        )
    sim = Simulator(
        api_key=args.api_key,
        lifecycle=Lifecycle(cancel_delay=args.cancel_delay),
        faults=FaultPlan(rate=args.fault_rate, kinds=kinds, seed=args.seed, latency=args.latency),
        rate_limit=None
        if args.rate_limit is None
        else RateLimit(requests=args.rate_limit, per=args.rate_window),
        seed=args.seed,
    )
    sim.add_jobs(args.jobs)
    return sim


async def _serve(sim: Simulator, host: str, port: int, *, keyed: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows, where Ctrl-C arrives as KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        async with sim.serve(host, port) as base_url:
            # The key itself is never printed; only whether one is needed.
            auth = "bearer key required" if keyed else "any key accepted"
            print(f"Simulated Together fine-tunes API at {base_url} ({len(sim)} jobs, {auth})")
            print(f"export TOGETHER_BASE_URL={base_url}", flush=True)
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT or SIGTERM, and return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sim = _simulator(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(sim, args.host, args.port, keyed=args.api_key is not None))
    except KeyboardInterrupt:
        pass  # asyncio.run has already shut the server down
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print("Simulator stopped.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
