"""The benchmark harness's smoke test: ``python -m benchmarks --quick`` ends every job.

It checks correctness only (every client, every job terminal, as both the client
and the simulator see it), never timing: performance is measured, not asserted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_ends_every_job_terminal(tmp_path: Path) -> None:
    """Every client of the quick run makes every job terminal, in every scenario."""
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json-out", str(summary_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    expected = {"finetune_ops", "raw", "floor"}
    if importlib.util.find_spec("together") is not None:
        expected.add("sdk")
    runs = summary["runs"]
    assert {run["client"] for run in runs} == expected
    assert {run["fault_rate"] for run in runs} == {0.0, 0.1}
    other_kinds = {run["scenario"].rsplit("-", 1)[1] for run in runs if "-f" not in run["scenario"]}
    assert other_kinds == {"budget", "dynamic", "outage", "crowded"}
    for run in runs:
        if run["client"] == "floor":  # its cancel answers are its result: it waits for nothing
            assert run["fault_rate"] == 0.0
            assert run["terminal"] == run["jobs"]
            continue
        label = f"{run['client']} at {run['scenario']}"
        assert run["failure"] is None, f"{label}: {run['failure']}"
        assert run["terminal"] == run["jobs"], f"{label}: the client saw too few terminal"
        assert run["server_terminal"] == run["jobs"], f"{label}: the simulator disagrees"
        assert run["requests"]["cancel"] >= run["jobs"], f"{label}: some job was never cancelled"
    assert summary["all_terminal"] is True


def test_a_scenario_no_chosen_client_runs_is_skipped() -> None:
    """`--clients sdk` leaves the rate scenarios (finetune_ops only in --quick) with none."""
    from benchmarks._config import Scenario
    from benchmarks._harness import plan

    scenario = Scenario(jobs=10, fault_rate=0.0)
    steps = list(plan([(scenario, (), 1), (scenario, ("raw",), 1)]))
    assert [step.client for step in steps] == ["raw"]
