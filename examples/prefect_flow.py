"""A Prefect 3 flow that starts fine-tuning jobs, waits for them, and stops them if cancelled.

    python examples/prefect_flow.py --simulate         # one run against simulated jobs
    python examples/prefect_flow.py --serve            # a deployment, run by this process

What is cancelled, and when:

- The flow run is cancelled (the UI, ``prefect flow-run cancel``, the API) while
  it runs as a deployment (``serve()`` or a worker): the ``on_cancellation``
  hook cancels every job of this flow run that has not ended, and logs what
  each one became. It finds them by the suffix every job of the run carries,
  not by what the flow process holds (the hook may run in the runner's
  process once the flow's has been killed), so a job whose create answer was
  lost is found too, once the API lists it.
- Nothing else cancels a job. A flow that fails or times out, a crash (the
  machine or the flow process dies), a flow run called in-process and
  interrupted (Ctrl-C, SIGTERM): the jobs go on running, and billing. Stop
  them with ``finetune-ops cancel``. The flow's own stopping is never a reason: an asyncio
  ``CancelledError`` inside the flow stops the wait, not the jobs.
- A retry of the flow run finds the jobs it started before, by the same
  suffix, and waits for them instead of starting them again (a job that
  failed is started anew).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.flows import Flow
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run as current_flow_run
from prefect.states import State

import finetune_ops as fo

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
FAILED = frozenset({"error", "user_error", "cancelled"})


def run_mark(flow_run_id: object) -> str:
    """The start of the suffix of one flow run's jobs: ``pf-<12 hex>-<index>-<try>``.

    Short, because the API puts the suffix in the output model's name.
    """
    return "pf-" + str(flow_run_id).replace("-", "")[:12]


async def jobs_of_run(jobs: fo.JobManager, mark: str) -> dict[str, fo.FineTuneJob]:
    """This flow run's jobs, by suffix, as the API lists them."""
    return {
        job.suffix: job
        for job in await jobs.list()
        if job.suffix is not None and job.suffix.startswith(f"{mark}-")
    }


async def cancel_started_jobs(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """``on_cancellation``: cancel this run's jobs that are still active; log each outcome.

    It may run in the runner's process, not the flow's: the key comes from that
    process's TOGETHER_API_KEY.
    """
    logger = flow_run_logger(flow_run, flow)
    async with fo.JobManager() as jobs:
        started = await jobs_of_run(jobs, run_mark(flow_run.id))
        active = [job.id for job in started.values() if not job.is_terminal]
        logger.info("cancelling %d of the %d jobs this run started", len(active), len(started))
        report = await jobs.cancel_many(active, wait=True, timeout=120)
    for result in report:
        if result.ok:
            logger.info("%s: %s", result.job_id, result.status)
        else:  # not confirmed: say so, with the last status seen
            logger.error(
                "%s: NOT confirmed cancelled (last seen %s): %r",
                result.job_id,
                result.status or "never",
                result.error,
            )


# Prefect is typed, but not installed where this project's mypy runs: there, flow is Any.
@flow(on_cancellation=[cancel_started_jobs])  # type: ignore[untyped-decorator]
async def fine_tune_sweep(
    training_file: str,
    learning_rates: list[float],
    model: str = MODEL,
    wait_timeout: float = 6 * 3600,
    poll_interval: float = 60,
) -> dict[str, str | None]:
    """Start one job per learning rate, wait until each has ended; their output models."""
    logger = get_run_logger()
    mark = run_mark(current_flow_run.id)
    poll = fo.PollPolicy(interval=poll_interval, max_interval=max(poll_interval, 300.0))
    async with fo.JobManager(poll=poll) as jobs:
        before = await jobs_of_run(jobs, mark)  # what earlier tries of this flow run started
        ids = []
        for index, rate in enumerate(learning_rates):
            # A retry waits for the job it started before, unless that one failed.
            tries = [job for suffix, job in before.items() if suffix.startswith(f"{mark}-{index}-")]
            job = next((job for job in tries if job.status not in FAILED), None)
            if job is None:
                job = await jobs.create(
                    model=model,
                    training_file=training_file,
                    learning_rate=rate,
                    suffix=f"{mark}-{index}-{len(tries)}",
                )
            logger.info("%s (learning rate %s): %s", job.id, rate, job.status)
            ids.append(job.id)
        report = await jobs.wait_many(ids, timeout=wait_timeout)
    not_done = [result for result in report if result.status != "completed"]
    for result in not_done:
        logger.error("%s: %s", result.job_id, result.status if result.ok else repr(result.error))
    if not_done:
        raise RuntimeError(f"{len(not_done)} of {len(ids)} jobs did not complete")
    return {
        result.job_id: None if result.job is None else result.job.model_output_name
        for result in report
    }


async def simulate() -> None:
    """One run against simulated jobs that complete within seconds."""
    from finetune_ops.testing import Lifecycle, Simulator

    quick = Lifecycle(pending=0.2, queued=0.2, running=1, compressing=0.2, uploading=0.2)
    with Simulator(lifecycle=quick).serve_in_thread() as base_url:
        os.environ["TOGETHER_BASE_URL"] = base_url
        os.environ.setdefault("TOGETHER_API_KEY", "sk-simulated")
        models = await fine_tune_sweep("file-simulated", [1e-5, 3e-5], poll_interval=0.5)
    for job_id, name in models.items():
        print(f"{job_id}: {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", action="store_true", help="one run against simulated jobs")
    parser.add_argument("--serve", action="store_true", help="serve the flow as a deployment")
    parser.add_argument("--name", default="fine-tune-sweep", help="the deployment's name")
    args = parser.parse_args()
    if args.simulate:
        asyncio.run(simulate())
    elif args.serve:
        fine_tune_sweep.serve(name=args.name)
    else:
        parser.error("give --simulate or --serve")


if __name__ == "__main__":
    main()
