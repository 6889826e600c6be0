"""The example DAG, run whole by ``dag.test()`` on Airflow's default local metadata db."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CONN_ENV, KEY, connection
from serve_simulator import fast_simulator, serve_in_thread

from finetune_ops.testing import Simulator

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "airflow_dag.py"


@pytest.fixture
def fast_sim(monkeypatch: pytest.MonkeyPatch, metadata_db: None) -> Iterator[Simulator]:
    sim = fast_simulator(api_key=KEY)
    with serve_in_thread(sim) as base_url:
        monkeypatch.setenv(CONN_ENV, connection(base_url))
        monkeypatch.setenv("FINETUNE_POLL_INTERVAL", "0.2")
        yield sim


def example_dag() -> Any:
    """The example, from the DAGs folder: Airflow 3's dag.test() reads its DAG from there."""
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    folder.mkdir(exist_ok=True)
    path = folder / EXAMPLE.name
    shutil.copyfile(EXAMPLE, path)
    spec = importlib.util.spec_from_file_location("airflow_dag_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.dag


def test_the_example_dag_runs(fast_sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = [job_id for job_id in fast_sim.job_ids() if fast_sim.job(job_id)["suffix"] == "sweep-a"]
    run = example_dag().test()
    assert str(run.state) in ("success", "DagRunState.SUCCESS")

    statuses = {job_id: fast_sim.status(job_id) for job_id in sweep}
    assert sorted(statuses.values()) == ["cancelled", "cancelled", "cancelled", "completed"]
    created = [job_id for job_id in fast_sim.job_ids() if job_id not in sweep]
    assert len(created) == 1
    assert fast_sim.status(created[0]) == "completed"
    assert fast_sim.counters["cancel"] == 3  # the three active sweep jobs, once each
    output = capsys.readouterr()
    assert fast_sim.job(created[0])["model_output_name"] in output.out + output.err
    assert KEY not in output.out + output.err
    assert KEY not in json.dumps(fast_sim.job(created[0]))
