"""An Airflow DAG: stop what is left of a sweep, fine-tune a model, hand its name on.

Needs the ``airflow`` extra and a ``together`` connection (the API key in its
password; or TOGETHER_API_KEY in the environment). ``.ci/airflow.sh`` runs it
with ``airflow dags test together_finetune`` against the simulator.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from finetune_ops.airflow import CancelFineTuneJobsOperator, FineTuneOperator

# Seconds between looks at a job; the simulated jobs of the CI run take seconds.
POLL_INTERVAL = float(os.environ.get("FINETUNE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="together_finetune",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"training_file": "file-0123456789"},
) as dag:
    # Every job of the abandoned "sweep-a" that is still active: cancelled, then
    # waited for in the triggerer until each has ended (ten minutes at most).
    stop_sweep = CancelFineTuneJobsOperator(
        task_id="stop_sweep",
        all_active=True,
        suffix="sweep-a",
        timeout=600,
        poll_interval=POLL_INTERVAL,
    )

    # One job per DAG run, even across retries; cancelled if the task is killed.
    train = FineTuneOperator(
        task_id="train",
        model="meta-llama/Llama-3.2-3B-Instruct",
        training_file="{{ params.training_file }}",
        suffix="nightly",
        create_params={"n_epochs": 1, "learning_rate": 1e-5},
        timeout=12 * 3600,
        poll_interval=POLL_INTERVAL,
        retries=2,
    )

    @task  # type: ignore[untyped-decorator,unused-ignore]
    def announce(record: dict[str, Any]) -> str:
        """The fine-tuned model's name, for the tasks that deploy or evaluate it."""
        name = str(record["model_output_name"])
        print(f"{record['id']} {record['status']}: {name}")
        return name

    stop_sweep >> train
    announce(train.output)
