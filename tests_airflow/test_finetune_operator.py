"""FineTuneOperator: execute, execute_complete, one job per logical run, on_kill."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from _airflow import deferred, run_trigger
from conftest import KEY, TaskInstanceStandIn

from finetune_ops.airflow import FineTuneJobsTrigger, FineTuneOperator
from finetune_ops.airflow._compat import AirflowException
from finetune_ops.testing import Simulator

MODEL = "meta-llama/Llama-3.2-3B-Instruct"


def operator(**kwargs: Any) -> FineTuneOperator:
    options: dict[str, Any] = {
        "task_id": "train",
        "model": MODEL,
        "training_file": "file-0123",
        "suffix": "nightly",
        "poll_interval": 0.01,
        **kwargs,
    }
    return FineTuneOperator(**options)


def test_execute_defers_and_completes_with_the_record(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    op = operator(create_params={"n_epochs": 2})
    deferral = deferred(op, context)
    (job_id,) = threaded_sim.job_ids()
    assert context["ti"].pushed == {"job_id": job_id}
    trigger = deferral.trigger
    assert isinstance(trigger, FineTuneJobsTrigger)
    assert trigger.cancel_on_kill is True
    assert KEY not in json.dumps(trigger.serialize())
    job = threaded_sim.job(job_id)
    assert job["n_epochs"] == 2
    assert job["suffix"].startswith("nightly-")

    threaded_sim.set_status(job_id, "completed")
    record = op.execute_complete(context, run_trigger(trigger))
    assert record["id"] == job_id
    assert record["status"] == "completed"
    assert record["model_output_name"] == threaded_sim.job(job_id)["model_output_name"]
    assert json.loads(json.dumps(record)) == record
    assert KEY not in json.dumps(record)
    assert "events" not in record


@pytest.mark.parametrize("status", ["error", "user_error", "cancelled"])
def test_a_failed_job_fails_the_task(
    threaded_sim: Simulator, context: dict[str, Any], status: str
) -> None:
    op = operator()
    deferral = deferred(op, context)
    (job_id,) = threaded_sim.job_ids()
    threaded_sim.set_status(job_id, status)
    with pytest.raises(AirflowException, match=f"{job_id} ended {status}"):
        op.execute_complete(context, run_trigger(deferral.trigger))


def test_the_deadline_fails_the_task_and_leaves_the_job(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    op = operator(timeout=0.2)
    deferral = deferred(op, context)
    (job_id,) = threaded_sim.job_ids()
    with pytest.raises(AirflowException, match="still running"):
        op.execute_complete(context, run_trigger(deferral.trigger))
    assert threaded_sim.status(job_id) == "running" or threaded_sim.status(job_id) == "pending"
    assert threaded_sim.counters["cancel"] == 0


def test_a_retry_waits_for_the_job_of_the_first_try(threaded_sim: Simulator) -> None:
    first, retry = TaskInstanceStandIn(), TaskInstanceStandIn()
    deferred(operator(), {"ti": first})
    deferred(operator(), {"ti": retry})  # the worker died after create; the task is retried
    assert threaded_sim.counters["create"] == 1
    assert first.pushed == retry.pushed

    other_run = TaskInstanceStandIn(run_id="scheduled__2026-12-03")
    deferred(operator(), {"ti": other_run})
    assert threaded_sim.counters["create"] == 2
    assert other_run.pushed != first.pushed


def test_a_retry_after_a_failed_job_starts_a_new_one(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    deferred(operator(), context)
    (failed,) = threaded_sim.job_ids()
    threaded_sim.set_status(failed, "error")
    deferred(operator(), context)
    assert threaded_sim.counters["create"] == 2
    assert context["ti"].pushed["job_id"] != failed


def test_a_job_already_ended_completes_without_deferring(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    deferred(operator(), context)
    (job_id,) = threaded_sim.job_ids()
    threaded_sim.set_status(job_id, "completed")
    record = operator().execute(context)  # a retry after the job ended
    assert record["id"] == job_id
    assert threaded_sim.counters["create"] == 1


def test_on_kill_cancels_the_started_job(threaded_sim: Simulator, context: dict[str, Any]) -> None:
    op = operator()
    deferred(op, context)
    (job_id,) = threaded_sim.job_ids()
    op.on_kill()
    assert threaded_sim.status(job_id) == "cancelled"
    assert threaded_sim.counters["cancel"] == 1


def test_on_kill_cancels_nothing_when_told_not_to(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    op = operator(cancel_on_kill=False)
    deferred(op, context)
    op.on_kill()
    assert threaded_sim.counters["cancel"] == 0


def test_on_kill_while_the_worker_waits(threaded_sim: Simulator, context: dict[str, Any]) -> None:
    """Without deferring, the worker waits; a kill cancels the job and the wait sees it end.

    The kill comes from another thread (Airflow 2 lets only the main thread execute).
    """
    op = operator(deferrable=False)
    pushed = context["ti"].pushed

    def kill() -> None:
        for _ in range(100_000):
            if "job_id" in pushed:
                op.on_kill()
                return
            time.sleep(0.001)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with pytest.raises(AirflowException, match="ended cancelled"):
            op.execute(context)
    finally:
        killer.join()
    assert threaded_sim.status(pushed["job_id"]) == "cancelled"
    assert threaded_sim.counters["cancel"] == 1


def test_the_key_stays_out_of_rendered_fields(threaded_sim: Simulator) -> None:
    op = operator(create_params={"n_epochs": "{{ 1 + 1 }}"})
    for field in op.template_fields:
        assert KEY not in json.dumps(getattr(op, field))
    assert "password" not in json.dumps(op.template_fields)
