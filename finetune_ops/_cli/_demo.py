"""``finetune-ops demo``: cancel hundreds of simulated jobs through injected faults.

A simulator runs in this process (no key, no network), every job starts out
running, and a share of requests fails on purpose. The batch runs exactly as
``finetune-ops cancel --wait`` would, then a table shows where every job ended
and what it took: retries, requests, faults and time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from finetune_ops._policies import PollPolicy
from finetune_ops._results import CancelResult
from finetune_ops.testing import FaultPlan, Lifecycle, Simulator

from . import _signals
from ._batch import Plan, Sink, Work, choose_display, drive
from ._config import Connection
from ._exit import Exit
from ._output import note, report_failures, stdout_console
from ._progress import Tracker

__all__ = ["DEMO_POLL", "run_demo"]

#: Look at every job twice a second: simulated cancels land after about a second.
DEMO_POLL = PollPolicy(interval=0.5, growth=1.0, max_interval=0.5, timeout=120.0)

_FAULT_GROUPS = {
    "rate_limit": "rate limited (429)",
    "server_error": "server error (5xx)",
    "bad_gateway": "server error (5xx)",
    "unavailable": "server error (5xx)",
    "gateway_timeout": "server error (5xx)",
    "html_page": "server error (5xx)",
    "empty_body": "server error (5xx)",
    "truncated_json": "cut-off body",
    "reset": "connection reset",
    "latency": "slow answer",
    "hang": "no answer",
}

_RETRY_CAUSES = {
    "RateLimitError": "rate limited (429)",
    "InternalServerError": "server error (5xx)",
    "APIConnectionError": "connection reset",
    "APITimeoutError": "timed out",
    "InvalidResponseError": "cut-off body",
}


def run_demo(*, jobs: int, fault_rate: float, seed: int, cancel_delay: float, quiet: bool) -> Exit:
    """Run the demo and return its exit status (0 when every job was cancelled)."""
    sim = Simulator(
        lifecycle=Lifecycle(cancel_delay=cancel_delay),
        faults=FaultPlan(rate=fault_rate, seed=seed),
        seed=seed,
    )
    ids = sim.add_jobs(jobs, statuses=("running",))
    out = stdout_console()
    _introduce(out, jobs, fault_rate)
    plan = Plan(cancel=True, wait=True, poll=DEMO_POLL)
    tracker = Tracker(len(ids), unseen=plan.unseen)
    sink = Sink(tracker, journal=None, writer=None)
    display = choose_display(tracker, "Cancelling", quiet=quiet, json_output=False)

    async def main() -> None:
        async with sim.serve() as base_url:
            await drive(Connection(base_url), Work(send=ids), plan, sink, display)

    start = time.monotonic()
    signum = _signals.run(main())
    elapsed = time.monotonic() - start
    out.print()
    out.print(_summary(sim, sink.results, tracker, jobs=jobs, elapsed=elapsed))
    failed = [result for result in sink.results if not result.ok]
    report_failures(failed, jobs)
    if signum is not None:
        note(f"Interrupted: {jobs - len(sink.results)} of {jobs} jobs have no result.")
        return Exit.for_signal(signum)
    if failed:
        return Exit.FAILED
    out.print(
        f"Every one of the {jobs:,} jobs got exactly one result, whatever the faults did.\n"
        "Next: run [bold]finetune-ops simulate[/] in one terminal, then "
        "[bold]finetune-ops list[/] and [bold]finetune-ops cancel --all-active[/] in another."
    )
    return Exit.OK


def _introduce(out: Console, jobs: int, fault_rate: float) -> None:
    out.print(f"[bold]finetune-ops demo[/]: cancel {jobs} fine-tuning jobs at once")
    lines = [
        f"A simulated Together fine-tunes API runs in this process with {jobs} running jobs.",
    ]
    if fault_rate > 0:
        lines.append(
            f"{fault_rate:.0%} of requests fail on purpose: rate limits, server errors, "
            "dropped connections and broken bodies."
        )
    lines.append(
        "finetune-ops sends every cancel, retries what fails, and polls until each job "
        "is cancelled."
    )
    out.print("\n".join(lines), style="dim")
    out.print()


def _breakdown(counts: Mapping[str, int]) -> Text:
    text = Text()
    for index, (label, count) in enumerate(sorted(counts.items(), key=lambda item: -item[1])):
        if index:
            text.append(" · ", style="dim")
        text.append(f"{label} {count:,}")
    return text


def _grouped(names: Iterable[str], groups: Mapping[str, str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name in names:
        label = next((label for key, label in groups.items() if name.startswith(key)), name)
        counts[label] += 1
    return counts


def _summary(
    sim: Simulator,
    results: list[CancelResult],
    tracker: Tracker,
    *,
    jobs: int,
    elapsed: float,
) -> Table:
    table = Table(title="Demo summary", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("details")
    outcomes = Counter(
        str(result.status) if result.ok else type(result.error).__name__ for result in results
    )
    failed = sum(1 for result in results if not result.ok)
    table.add_row("jobs", f"{jobs:,}", Text("all running at the start", style="dim"))
    for outcome, count in sorted(outcomes.items()):
        style = "green" if outcome == "cancelled" else "bold red"
        table.add_row(Text(f"  {outcome}", style=style), f"{count:,}", "")
    if failed == 0 and len(results) == jobs:
        table.add_row(Text("  failed", style="dim"), "0", "")
    if len(results) < jobs:
        table.add_row(
            Text("  no result (interrupted)", style="yellow"), f"{jobs - len(results):,}", ""
        )
    table.add_section()
    faults = _grouped((record.kind.value for record in sim.fault_log), _FAULT_GROUPS)
    table.add_row("faults injected", f"{len(sim.fault_log):,}", _breakdown(faults))
    retries = Counter(
        {_RETRY_CAUSES.get(name, name): count for name, count in tracker.retries.items()}
    )
    table.add_row("retries", f"{sum(retries.values()):,}", _breakdown(retries))
    requests = {name: count for name, count in sim.counters.items() if count}
    table.add_row("requests sent", f"{sim.total_requests:,}", _breakdown(requests))
    # Most of the time is the simulated service taking its cancel delay, not the client.
    delay = f"each cancel takes {sim.lifecycle.cancel_delay:g}s to land on the service"
    table.add_row("elapsed", f"{elapsed:.1f}s", Text(delay, style="dim"))
    return table
