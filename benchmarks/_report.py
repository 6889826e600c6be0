"""From measurements to medians, ratios, target verdicts and a markdown report."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ._config import (
    CANCEL_DELAY,
    CONCURRENCY,
    FAULT_KINDS,
    FAULT_RATE,
    LATENCY,
    POLL_INTERVAL,
    SCALE_SIZE,
    SEED,
    Scenario,
)
from ._harness import Measurement

ENDPOINTS = ("cancel", "retrieve", "list")
NAMES = {
    "finetune_ops": "finetune_ops",
    "raw": "raw aiohttp",
    "sdk": "together SDK",
    "floor": "floor (one cancel POST)",
}
OURS, FLOOR, PEER, LEAST = "finetune_ops", "raw", "sdk", "floor"
#: Issue 14 and 15's targets.
FLOOR_RATIO, RSS_LIMIT_MB = 1.3, 250
FAULT_WALL_RATIO, BUDGET_WALL_RATIO, BUDGET_429_PER_JOB = 1.1, 1.1, 0.03
DYNAMIC_SHARE, OUTAGE_PER_SECOND, RECOVERY_POLLS = 0.85, 5.0, 2
MB = 1_000_000


@attrs.frozen(kw_only=True)
class Row:
    """The medians of one client's runs in one scenario."""

    scenario: Scenario
    client: str
    runs: int
    failed_runs: int
    wall_seconds: float
    cpu_seconds: float
    requests_per_job: dict[str, float]
    peak_rss_mb: float
    terminal: int  # the worst run's count of jobs terminal (client and simulator agreeing)
    errors: dict[str, int]  # errors the client counted, summed over its runs
    failures: tuple[str, ...]  # why runs failed, if any did
    recorded: dict[str, float] = attrs.Factory(dict)  # medians of the simulator's rate figures

    @property
    def cpu_ms_per_job(self) -> float:
        return self.cpu_seconds * 1000 / self.scenario.jobs

    @property
    def complete(self) -> bool:
        return self.failed_runs == 0 and self.terminal == self.scenario.jobs

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.key,
            "jobs": self.scenario.jobs,
            "fault_rate": self.scenario.fault_rate,
            "client": self.client,
            "runs": self.runs,
            "failed_runs": self.failed_runs,
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "cpu_ms_per_job": self.cpu_ms_per_job,
            "requests_per_job": self.requests_per_job,
            "peak_rss_mb": self.peak_rss_mb,
            "terminal": self.terminal,
            "errors": self.errors,
            "failures": list(self.failures),
            "recorded": self.recorded,
            "rate_figures": rate_figures(self),
        }


def rate_figures(row: Row) -> dict[str, float]:
    """The figures issue 15 asks of a rate scenario, from the simulator's records."""
    scenario, recorded = row.scenario, row.recorded
    if scenario.kind == "budget" and scenario.rate:
        ideal = scenario.jobs / scenario.rate + CANCEL_DELAY
        return {
            "ideal_seconds": ideal,
            "wall_over_ideal": row.wall_seconds / ideal,
            "429_per_job": recorded.get("rate_limited", 0.0) / scenario.jobs,
        }
    if scenario.kind == "dynamic" and recorded.get("budget_available"):
        return {"goodput_share": recorded["succeeded"] / recorded["budget_available"]}
    if scenario.kind == "outage" and recorded.get("outage_seconds"):
        return {
            "outage_requests_per_second": recorded["outage_requests"] / recorded["outage_seconds"],
            "after_outage_seconds": recorded.get("after_outage_seconds", 0.0),
        }
    return {}


@attrs.frozen(kw_only=True)
class Verdict:
    """Where finetune_ops stands against one target in one scenario."""

    target: str
    scenario: Scenario
    measured: str
    reference: str
    met: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "scenario": self.scenario.key,
            "measured": self.measured,
            "reference": self.reference,
            "met": self.met,
        }


def _median(values: Iterable[float]) -> float:
    listed = list(values)
    return statistics.median(listed) if listed else float("nan")


def summarize(measurements: list[Measurement]) -> list[Row]:
    """One row per (scenario, client), in the order first measured; medians of good runs."""
    groups: dict[tuple[Scenario, str], list[Measurement]] = {}
    for measurement in measurements:
        groups.setdefault((measurement.scenario, measurement.client), []).append(measurement)
    rows = []
    for (scenario, client), runs in groups.items():
        good = [run for run in runs if run.failure is None]
        errors: Counter[str] = Counter()
        for run in runs:
            errors.update(run.errors)
        per_job = {
            name: _median(run.requests.get(name, 0) / scenario.jobs for run in good)
            for name in ENDPOINTS
        }
        per_job["total"] = _median(sum(run.requests.values()) / scenario.jobs for run in good)
        rows.append(
            Row(
                scenario=scenario,
                client=client,
                runs=len(runs),
                failed_runs=len(runs) - len(good),
                wall_seconds=_median(run.wall_seconds for run in good),
                cpu_seconds=_median(run.cpu_seconds for run in good),
                requests_per_job=per_job,
                peak_rss_mb=_median(run.max_rss_kib * 1024 / MB for run in good),
                terminal=min(run.seen_terminal if run.failure is None else 0 for run in runs),
                errors=dict(errors),
                failures=tuple(run.failure for run in runs if run.failure is not None),
                recorded={
                    name: _median(float(run.recorded[name]) for run in good)
                    for name in (good[0].recorded if good else {})
                    if name != "per_second"
                },
            )
        )
    return rows


def _find(rows: list[Row], scenario: Scenario, client: str) -> Row | None:
    return next((r for r in rows if r.scenario == scenario and r.client == client), None)


def verdicts(rows: list[Row]) -> list[Verdict]:
    """finetune_ops against each target, in each scenario where the target applies."""
    found: list[Verdict] = []

    def add(target: str, scenario: Scenario, measured: str, reference: str, met: bool) -> None:
        ours = _find(rows, scenario, OURS)
        complete = ours is not None and ours.complete
        if not complete:
            measured += " (not every job terminal)"
        found.append(
            Verdict(
                target=target,
                scenario=scenario,
                measured=measured,
                reference=reference,
                met=met and complete,
            )
        )

    for ours in (row for row in rows if row.client == OURS):
        scenario = ours.scenario
        floor = _find(rows, scenario, FLOOR)
        peer = _find(rows, scenario, PEER)
        least = _find(rows, scenario, LEAST)
        figures = rate_figures(ours)
        if scenario.kind == "plain" and scenario.fault_rate and floor is not None:
            ratio = ours.wall_seconds / floor.wall_seconds if floor.wall_seconds else 0.0
            add(
                f"wall time at most {FAULT_WALL_RATIO:g}x raw aiohttp's under random faults",
                scenario,
                f"{ours.wall_seconds:.2f} s ({ratio:.2f}x)",
                f"raw {floor.wall_seconds:.2f} s",
                ratio <= FAULT_WALL_RATIO,
            )
        if "wall_over_ideal" in figures:
            add(
                f"wall / ideal (N/R + cancel delay) at most {BUDGET_WALL_RATIO:g}",
                scenario,
                f"{figures['wall_over_ideal']:.2f}",
                f"ideal {figures['ideal_seconds']:.1f} s",
                figures["wall_over_ideal"] <= BUDGET_WALL_RATIO,
            )
            add(
                f"429s per job at most {BUDGET_429_PER_JOB:g}",
                scenario,
                f"{figures['429_per_job']:.3f}",
                f"{BUDGET_429_PER_JOB:g}",
                figures["429_per_job"] <= BUDGET_429_PER_JOB,
            )
        if "goodput_share" in figures:
            add(
                f"succeeded requests / budget available at least {DYNAMIC_SHARE:g}",
                scenario,
                f"{figures['goodput_share']:.2f}",
                f"{DYNAMIC_SHARE:g}",
                figures["goodput_share"] >= DYNAMIC_SHARE,
            )
        if "outage_requests_per_second" in figures:
            add(
                f"requests during the outage at most {OUTAGE_PER_SECOND:g} per second",
                scenario,
                f"{figures['outage_requests_per_second']:.1f}/s",
                f"{OUTAGE_PER_SECOND:g}/s",
                figures["outage_requests_per_second"] <= OUTAGE_PER_SECOND,
            )
            limit = RECOVERY_POLLS * POLL_INTERVAL
            add(
                f"end of outage to last job terminal at most {RECOVERY_POLLS} poll intervals",
                scenario,
                f"{figures['after_outage_seconds']:.2f} s",
                f"{limit:g} s",
                figures["after_outage_seconds"] <= limit,
            )
        if scenario.kind == "crowded" and floor is not None:
            add(
                "polling a crowded account: client CPU per job at most raw aiohttp's",
                scenario,
                f"{ours.cpu_ms_per_job:.3f} ms",
                f"raw {floor.cpu_ms_per_job:.3f} ms",
                ours.cpu_ms_per_job <= floor.cpu_ms_per_job,
            )
        if scenario.kind != "plain":
            continue
        if least is not None and not scenario.fault_rate and least.cpu_ms_per_job:
            ratio = ours.cpu_ms_per_job / least.cpu_ms_per_job
            add(
                f"client CPU per job at most {FLOOR_RATIO:g}x the floor's",
                scenario,
                f"{ours.cpu_ms_per_job:.3f} ms ({ratio:.2f}x)",
                f"floor {least.cpu_ms_per_job:.3f} ms",
                ratio <= FLOOR_RATIO,
            )
        if floor is not None:
            add(
                "client CPU per job at most raw aiohttp's",
                scenario,
                f"{ours.cpu_ms_per_job:.3f} ms",
                f"raw {floor.cpu_ms_per_job:.3f} ms",
                ours.cpu_ms_per_job <= floor.cpu_ms_per_job,
            )
        if peer is not None:
            times = peer.cpu_ms_per_job / ours.cpu_ms_per_job if ours.cpu_ms_per_job else 0.0
            add(
                "at least 10x less client CPU per job than the SDK",
                scenario,
                f"{times:.1f}x less ({ours.cpu_ms_per_job:.3f} ms)",
                f"SDK {peer.cpu_ms_per_job:.3f} ms",
                times >= 10,
            )
        if scenario.jobs == 10_000:
            total = ours.requests_per_job["total"]
            add(
                "at most 1.2 HTTP requests per job at N = 10,000",
                scenario,
                f"{total:.3f}",
                "1.2",
                total <= 1.2,
            )
        if floor is not None:
            add(
                "wall time at most raw aiohttp's",
                scenario,
                f"{ours.wall_seconds:.2f} s",
                f"raw {floor.wall_seconds:.2f} s",
                ours.wall_seconds <= floor.wall_seconds,
            )
        if scenario.jobs == SCALE_SIZE:
            add(
                f"100,000 jobs under {RSS_LIMIT_MB} MB peak RSS",
                scenario,
                f"{ours.peak_rss_mb:.0f} MB",
                f"{RSS_LIMIT_MB} MB",
                ours.peak_rss_mb < RSS_LIMIT_MB,
            )
    return found


# -- markdown -----------------------------------------------------------------


def _ratio(rows: list[Row], row: Row, reference: str, value: Callable[[Row], float]) -> str:
    other = _find(rows, row.scenario, reference)
    if other is None or not value(other) or other.failed_runs == other.runs:
        return "—"
    return f"{value(row) / value(other):.2f}"


def _cpu(row: Row) -> float:
    return row.cpu_ms_per_job


def _wall(row: Row) -> float:
    return row.wall_seconds


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| Scenario | Client | Wall s | CPU s | CPU ms/job | cancel/job | retrieve/job "
        "| list/job | req/job | Peak RSS MB | Terminal | CPU / floor | CPU / raw | CPU / SDK "
        "| Wall / raw | Wall / SDK |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        per_job = row.requests_per_job
        failed = f" ({row.failed_runs} of {row.runs} runs failed)" if row.failed_runs else ""
        lines.append(
            f"| {row.scenario.label} | {NAMES[row.client]} | {row.wall_seconds:.2f} "
            f"| {row.cpu_seconds:.2f} | {row.cpu_ms_per_job:.3f} | {per_job['cancel']:.3f} "
            f"| {per_job['retrieve']:.3f} | {per_job['list']:.4f} | {per_job['total']:.3f} "
            f"| {row.peak_rss_mb:.0f} | {row.terminal:,}/{row.scenario.jobs:,}{failed} "
            f"| {_ratio(rows, row, LEAST, _cpu)} "
            f"| {_ratio(rows, row, FLOOR, _cpu)} | {_ratio(rows, row, PEER, _cpu)} "
            f"| {_ratio(rows, row, FLOOR, _wall)} | {_ratio(rows, row, PEER, _wall)} |"
        )
    return lines


def _rate_table(rows: list[Row]) -> list[str]:
    lines = [
        "| Scenario | Client | Wall s | 429s/job | wall / ideal | succeeded / budget "
        "| outage req/s | outage end to last request s | Terminal |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row.scenario.kind in ("plain", "crowded"):
            continue
        figures = rate_figures(row)
        per_job = row.recorded.get("rate_limited", 0.0) / row.scenario.jobs

        def shown(name: str, digits: int = 2, figures: dict[str, float] = figures) -> str:
            return f"{figures[name]:.{digits}f}" if name in figures else "—"

        lines.append(
            f"| {row.scenario.label} | {NAMES[row.client]} | {row.wall_seconds:.2f} "
            f"| {per_job:.3f} | {shown('wall_over_ideal')} | {shown('goodput_share')} "
            f"| {shown('outage_requests_per_second', 1)} | {shown('after_outage_seconds')} "
            f"| {row.terminal:,}/{row.scenario.jobs:,} |"
        )
    return lines if len(lines) > 2 else []


def _targets(found: list[Verdict]) -> list[str]:
    lines = [
        "| Target | Scenario | finetune_ops | Reference | Where it stands |",
        "| --- | --- | --- | --- | --- |",
    ]
    for verdict in found:
        lines.append(
            f"| {verdict.target} | {verdict.scenario.label} | {verdict.measured} "
            f"| {verdict.reference} | {'met' if verdict.met else '**missed**'} |"
        )
    return lines


def _notes(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        head = f"- {row.scenario.label}, {NAMES[row.client]}"
        if row.errors:
            counted = ", ".join(f"{name} {count:,}" for name, count in sorted(row.errors.items()))
            runs = f"{row.runs} runs" if row.runs > 1 else "1 run"
            lines.append(f"{head}: {counted} (over {runs})")
        for failure in row.failures:
            lines.append(f"{head}: run failed: {failure.splitlines()[0]}")
    return lines or ["- none"]


def _machine(machine: dict[str, Any], loops: str) -> list[str]:
    packages = machine["packages"]
    versions = ", ".join(f"{name} {value}" for name, value in packages.items() if value)
    return [
        f"- CPU: {machine['cpu_model']}, {machine['cores']} logical cores, "
        f"{machine['memory_gib']} GiB RAM; shared with other work, so timings are noisy",
        f"- OS: {machine['os']}",
        f"- Python: {machine['python']}; {loops}",
        f"- Packages: {versions}",
        f"- Load average (1, 5, 15 min) at the start: {machine['load_average']}",
        f"- Project commit: {machine['git'] or 'unknown'}"
        + (
            f"; at the end: {machine['git_at_end']} (the code changed during the run)"
            if machine.get("git_at_end", machine["git"]) != machine["git"]
            else ""
        ),
    ]


def conditions() -> list[str]:
    kinds = ", ".join(FAULT_KINDS)
    return [
        "- Each client run is its own process, against its own freshly started simulator "
        f"process (same seed {SEED}, so the same N job ids, preloaded as pending, queued and "
        "running in turn).",
        f"- Simulator: {LATENCY * 1000:g} ms of latency on every request, cancel delay "
        f"{CANCEL_DELAY:g} s (cancel_requested -> cancelled).",
        f"- Fault scenarios: {FAULT_RATE:.0%} of requests fail, drawn evenly from: {kinds} "
        "(429s carry `Retry-After: 0.05`; a reset cuts the connection after half the body, "
        "the request having taken effect).",
        f"- Concurrency: {CONCURRENCY} requests in flight at most for every client.",
        f"- Polling: every client looks at each job every {POLL_INTERVAL:g} s, fixed "
        f"(finetune_ops: `PollPolicy(interval={POLL_INTERVAL:g}, growth=1.0, "
        f"max_interval={POLL_INTERVAL:g}, jitter=0)`; raw and SDK: "
        f"`await asyncio.sleep({POLL_INTERVAL:g})` between two GETs of a job). "
        "finetune_ops's other policies are its defaults.",
        "- CPU is user + system time of the client process (`getrusage`) over the client's "
        "own run, from before the client is created to after it is closed; start-up and "
        "imports are not counted. Peak RSS is the client process's lifetime peak, imports "
        "included. Requests per job are the simulator's counters divided by N.",
        "- Terminal: the worst repetition's count of jobs that both the client and the "
        "simulator saw in a terminal status at the end.",
        "- Ratios: this client's figure divided by raw aiohttp's or the SDK's, same scenario, "
        "same run; below 1 is better.",
    ]


def markdown(
    rows: list[Row],
    found: list[Verdict],
    *,
    machine: dict[str, Any],
    command: str,
    started: str,
    elapsed: float,
    repeats: str,
    loops: str,
) -> str:
    """The whole report as markdown."""
    lines = [
        "# finetune_ops benchmark",
        "",
        f"Command: `{command}`  ",
        f"Started {started}; took {elapsed / 60:.1f} min; {repeats}; medians shown.",
        "",
        "## Machine",
        "",
        *_machine(machine, loops),
        "",
        "## Conditions",
        "",
        *conditions(),
        "",
        "## Results",
        "",
        *_table(rows),
        "",
        *(["## Rate scenarios", "", *_rate_table(rows), ""] if _rate_table(rows) else []),
        "## Targets",
        "",
        *_targets(found),
        "",
        "## Errors the clients reported",
        "",
        "Requests that failed for good after the client's own retries (raw: every failed "
        "request, since it has none), and jobs a client gave up on.",
        "",
        *_notes(rows),
        "",
    ]
    return "\n".join(lines)
