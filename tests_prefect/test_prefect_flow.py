"""examples/prefect_flow.py against the simulator and a real Prefect API.

The flow runs to completion in this process; then, served as a deployment by
the example itself in a subprocess (Prefect's runner), a flow run is cancelled
through the API as the UI or ``prefect flow-run cancel`` would, and the jobs it
started must end cancelled, by the ``on_cancellation`` hook.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import prefect_flow
import pytest
from conftest import EXAMPLES
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import StateType
from prefect.states import State

from finetune_ops.testing import Lifecycle, Simulator

QUICK = Lifecycle(pending=0.2, queued=0.2, running=0.5, compressing=0.2, uploading=0.2)
SLOW = Lifecycle(cancel_delay=0.3)  # stays active for minutes unless cancelled


@pytest.fixture
def together(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function serving a simulator in a thread and pointing TOGETHER_* at it."""
    served: list[Any] = []

    def serve(lifecycle: Lifecycle) -> Simulator:
        sim = Simulator(lifecycle=lifecycle)
        context = sim.serve_in_thread()
        served.append(context)
        monkeypatch.setenv("TOGETHER_BASE_URL", context.__enter__())
        monkeypatch.setenv("TOGETHER_API_KEY", "sk-example")
        return sim

    yield serve
    for context in served:
        context.__exit__(None, None, None)


def jobs_of(sim: Simulator, flow_run_id: object) -> dict[str, str]:
    """The simulator's jobs of one flow run, by id, with their statuses."""
    mark = prefect_flow.run_mark(flow_run_id)
    return {
        job_id: sim.status(job_id)
        for job_id in sim.job_ids()
        if str(sim.job(job_id).get("suffix") or "").startswith(f"{mark}-")
    }


async def until(check: Any, what: str, seconds: float = 120) -> Any:
    """Ask ``check`` again until it answers something true (a bound, not a timing)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                if answer := await check():
                    return answer
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not seen: {what}") from None


async def test_the_flow_runs_to_completion(prefect_api: str, together: Any) -> None:
    sim = together(QUICK)
    state = await prefect_flow.fine_tune_sweep(
        "file-abc", [1e-5, 2e-5, 3e-5], poll_interval=0.2, return_state=True
    )
    assert state.is_completed(), state
    models = await state.result()
    assert set(models) == set(sim.job_ids())
    assert all(sim.status(job_id) == "completed" for job_id in models)
    assert all(name and name.endswith(job_id[3:11]) for job_id, name in models.items())
    assert sim.counters["create"] == 3
    assert sim.counters["cancel"] == 0


async def test_a_cancelled_flow_run_cancels_the_jobs_it_started(
    prefect_api: str, together: Any
) -> None:
    sim = together(SLOW)
    untouched = sim.add_job("running")  # another run's job: never cancelled
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "prefect_flow.py"),
        "--serve",
        "--name",
        "test",
        env=env,
        cwd=EXAMPLES.parent,
    )
    try:
        async with get_client() as client:

            async def deployment() -> Any:
                try:
                    return await client.read_deployment_by_name("fine-tune-sweep/test")
                except Exception:  # not registered yet
                    return None

            found = await until(deployment, "the example registered its deployment")
            run = await client.create_flow_run_from_deployment(
                found.id,
                parameters={
                    "training_file": "file-abc",
                    "learning_rates": [1e-5, 2e-5],
                    "poll_interval": 0.2,
                },
            )

            async def started() -> bool:
                return len(jobs_of(sim, run.id)) == 2

            await until(started, "the flow run started its two jobs")
            assert set(jobs_of(sim, run.id).values()) <= {"pending", "queued", "running"}
            # What `prefect flow-run cancel` does.
            await client.set_flow_run_state(run.id, State(type=StateType.CANCELLING))

            async def cancelled() -> bool:
                state = (await client.read_flow_run(run.id)).state
                return state is not None and state.is_cancelled()

            await until(cancelled, "the flow run ended cancelled")

            async def jobs_cancelled() -> bool:
                return set(jobs_of(sim, run.id).values()) == {"cancelled"}

            await until(jobs_cancelled, "the hook cancelled the run's jobs")

            async def hook_logged() -> bool:
                logs = await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
                )
                return any("cancelling 2 of the 2 jobs" in log.message for log in logs)

            await until(hook_logged, "the on_cancellation hook's log")
    finally:
        if runner.returncode is None:
            runner.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(runner.wait(), 30)
            except TimeoutError:
                runner.kill()
                await runner.wait()
    assert sim.counters["create"] == 2
    assert sim.counters["cancel"] == 2  # one each, and none for the other job
    assert sim.status(untouched) == "running"


async def test_a_retry_waits_for_the_jobs_it_started_and_restarts_a_failed_one(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect retries the flow run after a job failed: one new job, the other waited for."""
    sim = Simulator(lifecycle=SLOW)

    async def service() -> None:
        # The service ends each job as the test wants: the first try of job 1 fails.
        while True:
            for job_id in sim.job_ids():
                if sim.status(job_id) in {"pending", "queued", "running"}:
                    failed = sim.job(job_id)["suffix"].endswith("-1-0")
                    sim.set_status(job_id, "error" if failed else "completed")
            await asyncio.sleep(0.05)

    async with sim.serve() as base_url:
        monkeypatch.setenv("TOGETHER_BASE_URL", base_url)
        monkeypatch.setenv("TOGETHER_API_KEY", "sk-example")
        driver = asyncio.create_task(service())
        try:
            sweep = prefect_flow.fine_tune_sweep.with_options(retries=1)
            state = await sweep("file-abc", [1e-5, 2e-5], poll_interval=0.2, return_state=True)
        finally:
            driver.cancel()
    assert state.is_completed(), state
    models = await state.result()
    suffixes = {sim.job(job_id)["suffix"][16:]: sim.status(job_id) for job_id in sim.job_ids()}
    assert suffixes == {"0-0": "completed", "1-0": "error", "1-1": "completed"}
    assert {sim.job(job_id)["suffix"][16:] for job_id in models} == {"0-0", "1-1"}
    assert sim.counters["create"] == 3
