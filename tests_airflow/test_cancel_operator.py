"""CancelFineTuneJobsOperator: execute and execute_complete against the simulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _airflow import deferred, run_trigger
from conftest import KEY

from finetune_ops.airflow import CancelFineTuneJobsOperator, FineTuneJobsTrigger
from finetune_ops.airflow._compat import AirflowException
from finetune_ops.testing import Simulator


def operator(**kwargs: Any) -> CancelFineTuneJobsOperator:
    return CancelFineTuneJobsOperator(task_id="cancel", poll_interval=0.01, **kwargs)


@pytest.mark.parametrize("cancel_delay", [1.0])
def test_deferred_cancel_then_wait(threaded_sim: Simulator, context: dict[str, Any]) -> None:
    ids = threaded_sim.add_jobs(3, ["running"])
    done = threaded_sim.add_job("completed")
    op = operator(job_ids=",".join([*ids, done]))
    deferral = deferred(op, context)
    assert threaded_sim.counters["cancel"] == 4  # one each, from the worker, before deferring
    trigger = deferral.trigger
    assert isinstance(trigger, FineTuneJobsTrigger)
    assert deferral.method_name == "execute_complete"
    assert KEY not in json.dumps(trigger.serialize())
    assert trigger._state.pending == ids  # the completed job needs no wait
    assert all(trigger._state.jobs[job_id].cancel_accepted for job_id in ids)

    threaded_sim.advance(1.0)  # no request in flight: the worker is done, the wait not begun
    report = op.execute_complete(context, run_trigger(trigger))
    assert threaded_sim.counters["cancel"] == 4  # none sent again by the wait
    assert report["status"] == "success"
    assert {job_id: job["status"] for job_id, job in report["jobs"].items()} == {
        **dict.fromkeys(ids, "cancelled"),
        done: "completed",
    }
    assert json.loads(json.dumps(report)) == report


def test_selected_by_status(threaded_sim: Simulator, context: dict[str, Any]) -> None:
    queued = threaded_sim.add_jobs(2, ["queued"])
    running = threaded_sim.add_job("running")
    op = operator(statuses=["QUEUED"], deferrable=False)
    report = op.execute(context)
    assert set(report["jobs"]) == set(queued)
    assert threaded_sim.status(running) == "running"
    assert {threaded_sim.status(job_id) for job_id in queued} == {"cancelled"}


def test_all_active(threaded_sim: Simulator, context: dict[str, Any]) -> None:
    active = threaded_sim.add_jobs(3, ["pending", "queued", "running"])
    threaded_sim.add_job("completed")
    report = operator(all_active=True, deferrable=False).execute(context)
    assert list(report["jobs"]) == active
    assert threaded_sim.counters["cancel"] == 3


def test_nothing_selected_succeeds_with_an_empty_report(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    threaded_sim.add_job("completed")
    assert operator(all_active=True).execute(context) == {"status": "success", "jobs": {}}
    assert threaded_sim.counters["cancel"] == 0


@pytest.mark.parametrize("cancel_delay", [1.0])
def test_an_unknown_job_fails_the_task(threaded_sim: Simulator, context: dict[str, Any]) -> None:
    running = threaded_sim.add_job("running")
    op = operator(job_ids=[running, "ft-00000000-0000-4000-8000-000000000000"])
    deferral = deferred(op, context)
    threaded_sim.advance(1.0)
    with pytest.raises(AirflowException, match="1 of 2 job") as failure:
        op.execute_complete(context, run_trigger(deferral.trigger))
    assert "NotFoundError" in str(failure.value)
    assert threaded_sim.status(running) == "cancelled"


def test_without_wait_returns_once_accepted(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    running = threaded_sim.add_job("running")
    report = operator(job_ids=[running], wait=False).execute(context)
    assert report["jobs"][running]["cancel_sent"] is True
    assert report["status"] == "success"


def test_fail_on_counts_a_status_as_failure(
    threaded_sim: Simulator, context: dict[str, Any]
) -> None:
    done = threaded_sim.add_job("completed")
    with pytest.raises(AirflowException, match="fail_on"):
        operator(job_ids=[done], fail_on=["completed"]).execute(context)


def test_a_status_typo_is_refused(threaded_sim: Simulator, context: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="'runing' is not a job status"):
        operator(statuses=["runing"]).execute(context)


def test_ids_or_a_selection() -> None:
    with pytest.raises(ValueError, match="not both"):
        operator(job_ids=["ft-a"], all_active=True)
    with pytest.raises(ValueError, match="give job_ids"):
        operator()
