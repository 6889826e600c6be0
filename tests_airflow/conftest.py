"""Airflow tests against the simulator: a temporary AIRFLOW_HOME with the default sqlite db.

They run in a virtual environment of their own with Airflow installed
(``.ci/airflow.sh``); the main test suite never collects them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

# Before Airflow is imported anywhere: its settings read these once.
_HOME = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(_HOME, "dags")
os.environ.pop("TOGETHER_API_KEY", None)
os.environ.pop("TOGETHER_BASE_URL", None)

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402

from finetune_ops.testing import Lifecycle, ManualClock, Simulator  # noqa: E402


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)  # the temporary Airflow home and its db


#: The key the simulator demands; tests check it shows up nowhere.
KEY = "sk-sim-0123456789-secret"
CONN_ENV = "AIRFLOW_CONN_TOGETHER_DEFAULT"


def connection(base_url: str) -> str:
    """The ``together_default`` connection as Airflow reads it from the environment."""
    return json.dumps({"conn_type": "together", "host": base_url, "password": KEY})


@pytest.fixture(scope="session")
def metadata_db() -> None:
    """Airflow's default local metadata database (sqlite in the temporary home), migrated once."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


@pytest_asyncio.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Simulator]:
    """A keyed simulator on a manual clock, served on this test's loop (for trigger tests)."""
    simulator = Simulator(api_key=KEY, clock=ManualClock(), lifecycle=Lifecycle(cancel_delay=1.0))
    async with simulator.serve() as base_url:
        monkeypatch.setenv(CONN_ENV, connection(base_url))
        yield simulator


@pytest.fixture
def cancel_delay() -> float:
    """Seconds from cancel_requested to cancelled in `threaded_sim`; parametrize to change."""
    return 0.0


@pytest.fixture
def threaded_sim(monkeypatch: pytest.MonkeyPatch, cancel_delay: float) -> Iterator[Simulator]:
    """A keyed simulator on its own thread, for operators' synchronous methods.

    By default cancelled jobs end at once, so that no test has to move the
    clock while a request is being answered; a test that does moves it only
    between an operator's calls.
    """
    lifecycle = Lifecycle(cancel_delay=cancel_delay)
    simulator = Simulator(api_key=KEY, clock=ManualClock(), lifecycle=lifecycle)
    with simulator.serve_in_thread() as base_url:
        monkeypatch.setenv(CONN_ENV, connection(base_url))
        yield simulator


class TaskInstanceStandIn:
    """What the operators read of Airflow's task instance: its identity and ``xcom_push``."""

    def __init__(self, run_id: str = "manual__2026-12-02", task_id: str = "task") -> None:
        self.dag_id = "dag"
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = -1
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": TaskInstanceStandIn()}
