"""Running the plan: for each run a fresh simulator process, then a fresh client process.

Every client run gets its own simulator, started anew with the same seed, so
that all clients face the same N job ids in the same statuses and the
simulator's request counters are the client's alone. The harness process
itself is never measured.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from ._config import FAULT_RATE, Scenario, client_timeout

ROOT = Path(__file__).resolve().parent.parent
_READY_TIMEOUT = 120.0
_STOP_TIMEOUT = 120.0
# Settings of the developer's own environment that would steer a client elsewhere.
_SCRUBBED = ("TOGETHER_API_KEY", "TOGETHER_BASE_URL", "TOGETHER_CUSTOM_HEADERS")


@attrs.frozen(kw_only=True)
class Step:
    """One client run of the plan."""

    scenario: Scenario
    client: str
    repetition: int


@attrs.frozen(kw_only=True)
class Measurement:
    """What one client run measured, in the client process and in the simulator."""

    scenario: Scenario
    client: str
    repetition: int
    jobs: int
    terminal: int = 0  # jobs the client saw terminal
    server_terminal: int = 0  # preloaded jobs terminal on the simulator at the end
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    setup_cpu_seconds: float = 0.0
    max_rss_kib: int = 0
    requests: dict[str, int] = attrs.Factory(dict)
    faults: dict[str, int] = attrs.Factory(dict)
    errors: dict[str, int] = attrs.Factory(dict)
    server_cpu_seconds: float = 0.0
    recorded: dict[str, Any] = attrs.Factory(dict)  # the rate scenarios' figures
    failure: str | None = None

    @property
    def seen_terminal(self) -> int:
        """Jobs both sides saw terminal (the floor's: the cancels answered, it waits for none)."""
        if self.client == "floor":
            return self.terminal
        return min(self.terminal, self.server_terminal)

    @property
    def all_terminal(self) -> bool:
        if self.client == "floor":  # it waits for nothing: its cancel answers are its result
            return self.failure is None and self.terminal == self.jobs
        return self.failure is None and self.terminal == self.server_terminal == self.jobs

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self, filter=lambda attribute, _: attribute.name != "scenario")
        return {"scenario": self.scenario.key, "fault_rate": self.scenario.fault_rate, **data}


def plan(
    scenarios: list[tuple[Scenario, tuple[str, ...], int]],
) -> Iterator[Step]:
    """Steps in run order: repetitions outermost per scenario, clients rotated each time.

    Rotating the order spreads the machine's slow spells over the clients
    instead of always charging them to the same one.
    """
    for scenario, clients, repeat in scenarios:
        if not clients:
            continue  # none of the chosen clients runs it (the rate ones with --clients sdk)
        for repetition in range(repeat):
            shift = repetition % len(clients)
            for client in clients[shift:] + clients[:shift]:
                yield Step(scenario=scenario, client=client, repetition=repetition + 1)


def scenarios_for(sizes: list[int], faults: str) -> list[Scenario]:
    """The scenarios for ``sizes``, without faults, with them, or both ("off", "on", "both")."""
    rates = {"off": (0.0,), "on": (FAULT_RATE,), "both": (0.0, FAULT_RATE)}[faults]
    return [Scenario(jobs=size, fault_rate=rate) for rate in rates for size in sizes]


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _read_ready(stdout: IO[str], timeout: float) -> dict[str, Any]:
    ready, _, _ = select.select([stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"the simulator did not start within {timeout:g}s")
    line = stdout.readline()
    if not line:
        raise RuntimeError("the simulator exited before it was ready")
    ready_info: dict[str, Any] = json.loads(line)
    return ready_info


def run_step(step: Step, workdir: Path, *, client_uvloop: bool = False) -> Measurement:
    """Start a simulator, run the client against it, stop the simulator; measure."""
    scenario = step.scenario
    tag = f"{scenario.key}-{step.client}-{step.repetition}"
    ids, stats, figures = (workdir / f"{tag}.{kind}" for kind in ("ids", "stats", "json"))
    server_log, client_log = workdir / f"{tag}.server.log", workdir / f"{tag}.client.log"
    env = _environment()
    server_cmd = [
        *(sys.executable, "-m", "benchmarks._server", "--jobs", str(scenario.jobs)),
        *scenario.server_args(),
        *("--ids-out", str(ids)),
        *("--stats-out", str(stats)),
    ]
    base = Measurement(
        scenario=scenario, client=step.client, repetition=step.repetition, jobs=scenario.jobs
    )
    with server_log.open("w") as server_err:
        server = subprocess.Popen(
            server_cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=server_err, text=True
        )
        try:
            assert server.stdout is not None
            base_url = _read_ready(server.stdout, _READY_TIMEOUT)["base_url"]
            failure = _run_client(step, base_url, ids, figures, client_log, env, client_uvloop)
        except (RuntimeError, ValueError) as error:
            failure = f"{error}\n{_tail(server_log)}"
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if failure is not None:
        return attrs.evolve(base, failure=failure)
    client_data = json.loads(figures.read_text())
    server_data = json.loads(stats.read_text()) if stats.exists() else {}
    return attrs.evolve(
        base,
        terminal=client_data["terminal"],
        server_terminal=server_data.get("terminal", 0),
        wall_seconds=client_data["wall_seconds"],
        cpu_seconds=client_data["cpu_seconds"],
        setup_cpu_seconds=client_data["setup_cpu_seconds"],
        max_rss_kib=client_data["max_rss_kib"],
        requests=server_data.get("counters", {}),
        faults=server_data.get("faults", {}),
        errors=client_data["errors"],
        server_cpu_seconds=server_data.get("cpu_seconds", 0.0),
        recorded=server_data.get("recorded", {}),
        failure=None if server_data else f"the simulator wrote no stats\n{_tail(server_log)}",
    )


def _run_client(
    step: Step,
    base_url: str,
    ids: Path,
    figures: Path,
    log: Path,
    env: dict[str, str],
    client_uvloop: bool,
) -> str | None:
    """Run the client process; None when it succeeded, else why it did not."""
    command = [
        *(sys.executable, "-m", "benchmarks._runner", "--client", step.client),
        *("--base-url", base_url, "--ids", str(ids), "--out", str(figures)),
    ]
    if client_uvloop:
        command.append("--uvloop")
    limit = client_timeout(step.scenario.jobs) + 120.0
    with log.open("w") as output:
        try:
            done = subprocess.run(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=limit
            )
        except subprocess.TimeoutExpired:
            return f"the client ran past {limit:g}s and was killed"
    if done.returncode != 0:
        return f"the client exited with {done.returncode}:\n{_tail(log)}"
    return None


def run_plan(
    steps: list[Step],
    *,
    client_uvloop: bool = False,
    progress: Callable[[int, int, Measurement], None] | None = None,
) -> list[Measurement]:
    """Run every step in order, each in fresh processes; return the measurements."""
    results = []
    with tempfile.TemporaryDirectory(prefix="finetune-ops-bench-") as tmp:
        for index, step in enumerate(steps, 1):
            measurement = run_step(step, Path(tmp), client_uvloop=client_uvloop)
            results.append(measurement)
            if progress is not None:
                progress(index, len(steps), measurement)
    return results
