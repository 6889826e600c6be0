"""``python -m benchmarks``: finetune_ops, raw aiohttp and the together SDK, side by side.

See ``benchmarks/README.md`` for what is measured and how to read the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from . import _report
from ._config import (
    CLIENTS,
    DEFAULT_SIZES,
    QUICK_SIZE,
    SCALE_CLIENTS,
    SCALE_SIZE,
    Scenario,
    crowded_scenario,
    rate_scenarios,
)
from ._harness import ROOT, Measurement, plan, run_plan, scenarios_for
from ._machine import describe, git_state

RESULTS = Path(__file__).resolve().parent / "results"


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def _clients(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - set(CLIENTS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"clients are some of {', '.join(CLIENTS)}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Cancel-and-wait benchmark: finetune_ops vs raw aiohttp vs the together SDK.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: N={QUICK_SIZE}, with and without faults, one repetition, "
        "no files written unless asked; checks that every job ends terminal",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated job counts (default: %(default)s)",
    )
    parser.add_argument(
        "--faults",
        choices=("both", "off", "on"),
        default="both",
        help="run each size without faults, with 10%% faults, or both (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default: 3)")
    parser.add_argument(
        "--clients",
        type=_clients,
        default=None,
        help=f"comma-separated, from {','.join(CLIENTS)} (default: all)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help=f"also run N={SCALE_SIZE:,} without faults for {' and '.join(SCALE_CLIENTS)}",
    )
    parser.add_argument(
        "--scale-only", action="store_true", help="run only the scale scenario (implies --scale)"
    )
    parser.add_argument(
        "--scale-repeat", type=int, default=1, help="repetitions at scale (default: 1)"
    )
    parser.add_argument(
        "--rate-scenarios",
        action="store_true",
        help="also run the rate scenarios: random faults, fixed and dynamic budgets, an outage",
    )
    parser.add_argument(
        "--rate-only", action="store_true", help="run only the rate scenarios (implies the flag)"
    )
    parser.add_argument(
        "--crowded",
        action="store_true",
        help="also run the crowded account: 50 jobs listed after 200,000 finished ones",
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run the clients on uvloop (default: asyncio)"
    )
    parser.add_argument(
        "--md-out",
        type=Path,
        default=None,
        help="markdown report path (default: benchmarks/results/latest.md; none with --quick)",
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=None,
        help="JSON summary path (default: benchmarks/results/latest.json; none with --quick)",
    )
    return parser


def _available(clients: tuple[str, ...], explicit: bool) -> tuple[str, ...]:
    if "sdk" in clients and importlib.util.find_spec("together") is None:
        if explicit:
            sys.exit("error: the sdk client needs the together package: pip install '.[bench]'")
        print("warning: together is not installed; skipping the sdk client", file=sys.stderr)
        return tuple(client for client in clients if client != "sdk")
    return clients


def _for(scenario: Scenario, clients: tuple[str, ...]) -> tuple[str, ...]:
    """The floor only where nothing fails: it neither retries nor waits."""
    if scenario.fault_rate or scenario.kind != "plain":
        return tuple(client for client in clients if client != "floor")
    return clients


def _progress(index: int, total: int, measurement: Measurement) -> None:
    head = (
        f"[{index}/{total}] {measurement.scenario.label} | {measurement.client} "
        f"| rep {measurement.repetition}: "
    )
    if measurement.failure is not None:
        print(head + "FAILED: " + measurement.failure, file=sys.stderr, flush=True)
        return
    requests = sum(measurement.requests.values())
    print(
        head + f"wall {measurement.wall_seconds:.2f} s, cpu {measurement.cpu_seconds:.2f} s, "
        f"rss {measurement.max_rss_kib / 1024:.0f} MiB, {requests:,} requests, "
        f"{measurement.seen_terminal:,}/{measurement.jobs:,} "
        "terminal",
        file=sys.stderr,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    clients = _available(args.clients or CLIENTS, explicit=args.clients is not None)
    groups: list[tuple[Scenario, tuple[str, ...], int]] = []
    rate_clients = tuple(client for client in clients if client != "floor")
    if args.quick:
        groups = [
            (scenario, _for(scenario, clients), 1)
            for scenario in scenarios_for([QUICK_SIZE], "both")
        ]
        # The quick run checks that the rate scenarios work, not how others fare in them.
        quick_rate = tuple(client for client in rate_clients if client == "finetune_ops")
        groups += [(scenario, quick_rate, 1) for scenario in rate_scenarios(quick=True)]
        groups.append((crowded_scenario(quick=True), quick_rate, 1))
    else:
        if not (args.scale_only or args.rate_only):
            groups = [
                (scenario, _for(scenario, clients), args.repeat)
                for scenario in scenarios_for(args.sizes, args.faults)
            ]
        scale_clients = tuple(client for client in clients if client in SCALE_CLIENTS)
        if (args.scale or args.scale_only) and scale_clients and not args.rate_only:
            groups.append((Scenario(jobs=SCALE_SIZE), scale_clients, args.scale_repeat))
        if args.rate_scenarios or args.rate_only:
            already = {scenario for scenario, _, _ in groups}
            groups += [
                (scenario, rate_clients, 1)
                for scenario in rate_scenarios(quick=False)
                if scenario not in already
            ]
        if args.crowded and not (args.scale_only or args.rate_only):
            groups.append((crowded_scenario(quick=False), rate_clients, 1))
    if not groups:
        sys.exit("error: nothing to run")

    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = describe(ROOT)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    start = time.monotonic()
    measurements = run_plan(list(plan(groups)), client_uvloop=args.uvloop, progress=_progress)
    elapsed = time.monotonic() - start
    # Others may work in the same tree: say so if the code changed under the run.
    machine["git_at_end"] = git_state(ROOT)

    rows = _report.summarize(measurements)
    found = _report.verdicts(rows)
    repeats = ", ".join(
        f"{scenario.label}: {repeat} repetition{'s' if repeat > 1 else ''}"
        for scenario, _, repeat in groups
    )
    loops = f"clients on {'uvloop' if args.uvloop else 'asyncio'}, simulator on uvloop if installed"
    text = _report.markdown(
        rows,
        found,
        machine=machine,
        command=command.strip(),
        started=started,
        elapsed=elapsed,
        repeats=repeats,
        loops=loops,
    )
    print(text)
    complete = all(measurement.all_terminal for measurement in measurements)
    summary = {
        "command": command.strip(),
        "started": started,
        "elapsed_seconds": elapsed,
        "machine": machine,
        "clients": list(clients),
        "all_terminal": complete,
        "runs": [measurement.to_json() for measurement in measurements],
        "rows": [row.to_json() for row in rows],
        "targets": [verdict.to_json() for verdict in found],
    }
    md_out, json_out = args.md_out, args.json_out
    if not args.quick:
        md_out = md_out or RESULTS / "latest.md"
        json_out = json_out or RESULTS / "latest.json"
    if md_out is not None:
        md_out.parent.mkdir(parents=True, exist_ok=True)
        md_out.write_text(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2) + "\n")
    if not complete:
        print("error: some jobs did not end terminal (see the table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
