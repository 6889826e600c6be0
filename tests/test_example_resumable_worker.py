"""examples/resumable_worker.py, killed with SIGKILL mid-batch and run again from its file.

The simulator sits behind a middleware that counts each job's requests, run by
run, and lets only the first cancels of the first run through: the others are
held until that run is dead (as if lost on the way), so that what the killed
run had answered is known exactly. Its clock never moves: the test says when
each job has stopped, and the worker's state file says what it knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from finetune_ops.testing import Lifecycle, ManualClock, Simulator

WORKER = Path(__file__).resolve().parent.parent / "examples" / "resumable_worker.py"
JOBS = 12
THROUGH = 6  # cancels of the first run that reach the simulator

Handler = Callable[[web.Request], Any]


class Gate:
    """Counts each job's requests per run; in run 1, holds the cancels after the first few."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.run = 1
        self.through: list[str] = []  # ids whose cancel reached the simulator in run 1
        self.requests: Counter[tuple[int, str, str]] = Counter()  # (run, kind, id)
        self.let_go = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        job_id = request.match_info.get("id")
        if job_id is None:
            return await handler(request)  # the list: no job of its own
        kind = "cancel" if request.path.endswith("/cancel") else request.method
        if kind == "cancel" and self.run == 1:
            if len(self.through) == THROUGH:
                await self.let_go.wait()  # the killed run never hears back
                raise web.HTTPServiceUnavailable()
            self.through.append(job_id)
        self.requests[(self.run, kind, job_id)] += 1
        response: web.StreamResponse = await handler(request)
        if kind == "cancel" and self.run == 2:
            self.sim.set_status(job_id, "cancelled")  # the service finishes it at once
        return response

    def count(self, kind: str, job_id: str, run: int | None = None) -> int:
        runs = (1, 2) if run is None else (run,)
        return sum(self.requests[(r, kind, job_id)] for r in runs)


@contextlib.asynccontextmanager
async def gated(sim: Simulator, gate: Gate) -> AsyncIterator[str]:
    app = sim.make_app()
    app.middlewares.append(gate.middleware)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        gate.let_go.set()
        await runner.cleanup()


async def start(base_url: str, state: Path, *ids: str) -> asyncio.subprocess.Process:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOGETHER_")}
    env |= {"TOGETHER_API_KEY": "sk-example", "TOGETHER_BASE_URL": base_url}
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-W", "error", str(WORKER), "--state", str(state)),
        *("--poll-interval", "0.1", *ids),
        env=env,
        cwd=state.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content (whole: it is replaced, never rewritten), or None before it."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data


async def file_shows(path: Path, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The state file's content once ``done`` holds for it."""
    async with asyncio.timeout(60):  # a bound for a broken worker, not a timing
        while True:
            data = read_state(path)
            if data is not None and done(data):
                return data
            await asyncio.sleep(0.02)


def accepted(data: dict[str, Any]) -> set[str]:
    return {job_id for job_id, job in data["jobs"].items() if job["cancel_accepted"]}


def finished(data: dict[str, Any]) -> set[str]:
    return {job_id for job_id, job in data["jobs"].items() if job["result"] is not None}


@pytest.mark.timeout(120)
async def test_a_killed_worker_resumes_without_a_second_cancel(tmp_path: Path) -> None:
    sim = Simulator(clock=ManualClock(), lifecycle=Lifecycle(cancel_delay=60))
    ids = sim.add_jobs(JOBS, statuses=("running",))
    state = tmp_path / "batch.json"
    gate = Gate(sim)
    async with gated(sim, gate) as base_url:
        first = await start(base_url, state, *ids)
        try:
            await file_shows(state, lambda data: len(accepted(data)) == THROUGH)
            # Half the accepted cancels have landed; the worker records their results.
            landed = gate.through[: THROUGH // 2]
            for job_id in landed:
                sim.set_status(job_id, "cancelled")
            killed_at = await file_shows(state, lambda data: finished(data) == set(landed))
            first.send_signal(signal.SIGKILL)
            out, _ = await first.communicate()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        assert first.returncode == -signal.SIGKILL
        assert accepted(killed_at) == set(gate.through)
        assert sim.counters["cancel"] == THROUGH
        [deadline_line] = [line for line in out.decode().splitlines() if "deadline" in line]

        # The other accepted cancels land while no worker runs.
        for job_id in gate.through[THROUGH // 2 :]:
            sim.set_status(job_id, "cancelled")
        gate.run = 2
        second = await start(base_url, state)
        out, _ = await asyncio.wait_for(second.communicate(), 60)
        lines = out.decode().splitlines()
        assert second.returncode == 0, lines

    # One cancel per job, across both runs, as the simulator counted them too.
    assert {job_id: gate.count("cancel", job_id) for job_id in ids} == dict.fromkeys(ids, 1)
    assert sim.counters["cancel"] == JOBS
    # A job with its result in the file was not looked at again.
    for job_id in landed:
        assert gate.count("GET", job_id, run=2) == gate.count("cancel", job_id, run=2) == 0
    # Every job has one result, printed once, and the deadline is the first run's.
    assert f"resuming {state}: 3 of {JOBS} jobs have their result, 6 cancels were accepted" in lines
    assert deadline_line in lines
    assert sorted(line for line in lines if line.startswith("ft-")) == sorted(
        f"{job_id}: cancelled" for job_id in ids
    )
    final = read_state(state)
    assert final is not None
    assert final["deadline"] == killed_at["deadline"]
    assert finished(final) == set(ids)
    assert all(job["result"]["ok"] for job in final["jobs"].values())
    assert all(sim.status(job_id) == "cancelled" for job_id in ids)


async def test_wait_only_cancels_nothing(tmp_path: Path) -> None:
    """--wait: each job's result as it ends by itself; no cancel is sent."""
    sim = Simulator(lifecycle=Lifecycle(running=0.2, compressing=0, uploading=0))
    ids = sim.add_jobs(3, statuses=("running",))
    state = tmp_path / "batch.json"
    async with sim.serve() as base_url:
        worker = await start(base_url, state, "--wait", *ids)
        out, _ = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 0, out.decode()
    assert sorted(line for line in out.decode().splitlines() if line.startswith("ft-")) == sorted(
        f"{job_id}: completed" for job_id in ids
    )
    assert sim.counters["cancel"] == 0


async def test_simulate_stops_and_resumes(tmp_path: Path) -> None:
    """--simulate: a run stopped after a second, then one from the file that sends no cancel."""
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-W", "error", str(WORKER), "--simulate", "--poll-interval", "0.2"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(worker.communicate(), 60)
    text = out.decode()
    assert worker.returncode == 0, text
    # Its jobs take 3 s to stop after the cancel: none had its result at the stop.
    assert re.search(r"0 of 10 jobs have their result, \d+ cancels were accepted", text)
    assert text.count(": cancelled") == 10
    assert text.rstrip().endswith("10 jobs, 0 failed")
