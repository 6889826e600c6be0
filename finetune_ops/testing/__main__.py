"""Run the simulator as a server: `python -m finetune_ops.testing --port 8080`.

`finetune-ops simulate` is this same program (the same options, from this one
definition), with a fixed default port and a few jobs preloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ._account import DEFAULT_PROJECT
from ._faults import DEFAULT_KINDS, FaultKind, FaultPlan
from ._lifecycle import Lifecycle
from ._ratelimit import RateLimit, Window
from ._simulator import Simulator


def _parser(prog: str, defaults: Mapping[str, Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve a simulated Together fine-tunes API until interrupted."
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add(
        "--port",
        type=int,
        default=0,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    add("--jobs", type=int, default=0, help="preload N active jobs (pending, queued, running)")
    add(
        "--job",
        action="append",
        default=[],
        metavar="ID[:STATUS]",
        help="add a job with this id, in STATUS (default running); repeatable",
    )
    add(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY[=PROJECT]",
        help="require this bearer key; repeat for several keys, each seeing only its "
        "project's jobs (default: accept any key or none)",
    )
    add("--seed", type=int, default=0, help="seed for ids, settings and faults")
    add("--fault-rate", type=float, default=0.0, help="share of requests that get a fault (0-1)")
    add(
        "--fault-kinds",
        default=None,
        help="comma-separated fault kinds to draw from (default: all but hang); "
        f"choose from {', '.join(kind.value for kind in FaultKind)}",
    )
    add("--latency", type=float, default=0.0, help="seconds of delay added to every request")
    add(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="admit N requests per --rate-window; refuse the rest with 429 (default: no limit)",
    )
    add("--rate-window", type=float, default=1.0, help="seconds per rate-limit window")
    add(
        "--rate-counting",
        choices=[window.value for window in Window],
        default=Window.FIXED.value,
        help="how the budget is counted (default: %(default)s)",
    )
    add(
        "--rate-schedule",
        default=None,
        metavar="T:N,...",
        help="a budget that changes: from T seconds on, N per --rate-window, "
        "e.g. 0:500,10:250,30:500 (needs --rate-limit)",
    )
    add(
        "--capacity-short",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="answer 503 to this share of the requests within the budget (needs --rate-limit)",
    )
    add(
        "--event-types",
        choices=("spec", "legacy"),
        default="spec",
        help="event type names: the spec's, or the upper-case ones together SDK 1.x expects",
    )
    add(
        "--cancel-delay",
        type=float,
        default=Lifecycle().cancel_delay,
        help="seconds from cancel_requested to cancelled (default: %(default)s)",
    )
    parser.set_defaults(**defaults)
    return parser


def _keys(entries: Sequence[str]) -> dict[str, str] | None:
    if not entries:
        return None
    keys: dict[str, str] = {}
    for index, entry in enumerate(entries, 1):
        key, _, project = entry.partition("=")
        if not key:
            raise ValueError(f"--api-key needs a key: {entry!r}")
        keys[key] = project or (DEFAULT_PROJECT if len(entries) == 1 else f"project-{index}")
    return keys


def _schedule(text: str | None) -> list[tuple[float, int]]:
    if not text:
        return []
    steps = []
    for part in text.split(","):
        at, sep, budget = part.strip().partition(":")
        try:
            steps.append((float(at), int(budget)))
        except ValueError:
            raise ValueError(f"--rate-schedule parts are T:N, got {part!r}") from None
        if not sep:
            raise ValueError(f"--rate-schedule parts are T:N, got {part!r}")
    return steps


def _rate_limit(args: argparse.Namespace) -> RateLimit | None:
    if args.rate_limit is None:
        if args.rate_schedule or args.capacity_short:
            raise ValueError("--rate-schedule and --capacity-short need --rate-limit")
        return None
    return RateLimit(
        requests=args.rate_limit,
        per=args.rate_window,
        window=Window(args.rate_counting),
        schedule=_schedule(args.rate_schedule),
        capacity_short=args.capacity_short,
        seed=args.seed,
    )


def _simulator(args: argparse.Namespace) -> Simulator:
    if args.jobs < 0:
        raise ValueError("--jobs must be >= 0")
    kinds = DEFAULT_KINDS
    if args.fault_kinds:
        kinds = tuple(
            FaultKind(part.strip()) for part in args.fault_kinds.split(",") if part.strip()
        )
    sim = Simulator(
        api_keys=_keys(args.api_key),
        lifecycle=Lifecycle(cancel_delay=args.cancel_delay),
        faults=FaultPlan(rate=args.fault_rate, kinds=kinds, seed=args.seed, latency=args.latency),
        rate_limit=_rate_limit(args),
        seed=args.seed,
        event_types=args.event_types,
    )
    for entry in args.job:
        job_id, _, status = entry.partition(":")
        sim.add_job(status or "running", id=job_id)
    sim.add_jobs(args.jobs)
    return sim


def client_lines(base_url: str, *, keyed: bool) -> list[str]:
    """What to tell each kind of client so that it talks to the simulator at `base_url`.

    finetune-ops and together SDK 1.x take the root with /v1; together SDK 3.x
    (and its `together` CLI) adds /v1 to every path itself.
    """
    root = base_url.removesuffix("/v1")
    lines = [
        f"export TOGETHER_BASE_URL={base_url}",
        "# the line above is for finetune-ops and together SDK 1.x; together SDK 3.x and",
        "# its CLI add /v1 themselves (and ask GET /v3/whoami, answered here), so they need:",
        f"#   export TOGETHER_BASE_URL={root}",
    ]
    if not keyed:
        lines.append("# any key is accepted; the SDKs want one set: export TOGETHER_API_KEY=sim")
    return lines


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
            print("\n".join(client_lines(base_url, keyed=keyed)), flush=True)
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "python -m finetune_ops.testing",
    defaults: Mapping[str, Any] | None = None,
) -> int:
    """Parse arguments, serve until SIGINT or SIGTERM, and return the exit code.

    `prog` and `defaults` (option name to default value) let another command
    line offer this same program under its own name.
    """
    parser = _parser(prog, defaults or {})
    args = parser.parse_args(argv)
    try:
        sim = _simulator(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(sim, args.host, args.port, keyed=bool(args.api_key)))
    except KeyboardInterrupt:
        pass  # asyncio.run has already shut the server down
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print("Simulator stopped.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
