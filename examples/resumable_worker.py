"""A worker that cancels (or waits for) a batch, saving its state, and resumes after a kill.

    python examples/resumable_worker.py --state batch.json ft-... ft-...
    python examples/resumable_worker.py --state batch.json        # killed? run it again
    python examples/resumable_worker.py --state batch.json --wait ft-...  # cancel none
    python examples/resumable_worker.py --simulate                # interrupted and resumed

The state (``finetune_ops.BatchState`` as JSON) is written to the file as the
batch goes: replaced whole (a temporary file, then ``os.replace``), never
half-written, at most once a second. Run again with the same file, the worker
goes on where the last run stopped, even one killed with SIGKILL: jobs with
their result are not looked at again, a cancel the API accepted is not sent
again, and the deadline stays the one the first run set. What the file cannot
know is a cancel sent and not yet answered when the worker died (or answered in
its last second): that one is sent again, which asks nothing new of a job
already stopping.

SIGTERM or Ctrl-C stops the worker the way an orchestrator does: the state is
saved and the jobs are left as they are (stopping the worker cancels no job).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import finetune_ops as fo

from _simulated import simulated_jobs


class StateFile:
    """Keeps a batch's state on disk: written whole, at most once per ``every`` seconds."""

    def __init__(self, path: Path, state: fo.BatchState, *, every: float = 1.0) -> None:
        self.path = path
        self.state = state
        self._every = every
        self._dirty = asyncio.Event()
        self._taken = 0  # snapshots taken, and the newest one on disk
        self._on_disk = 0
        self._disk = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> fo.BatchState | None:
        """The state a previous run left, or None when there is no file yet."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return fo.BatchState.from_json(json.loads(text))

    def changed(self, event: fo.Event) -> None:
        """``on_event``: the facts a resumed run needs are an accepted cancel and a result."""
        if isinstance(event, fo.CancelAccepted | fo.JobFinished):
            self._dirty.set()

    async def save(self) -> None:
        """Write the state now (its JSON is taken here, on the loop; the disk work in a thread)."""
        self._dirty.clear()
        self._taken += 1
        await asyncio.to_thread(self._write, self._taken, json.dumps(self.state.to_json()))

    def _write(self, number: int, text: str) -> None:
        # A write goes on in its thread when its task is cancelled: never let it
        # land after a newer snapshot's.
        with self._disk:
            if number > self._on_disk:
                _replace(self.path, text)
                self._on_disk = number

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Save the state as it changes while the block runs, and once more at its end."""
        writer = asyncio.create_task(self._keep())
        try:
            yield
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            # Shielded: the last save must land even when the block ends by cancellation.
            await asyncio.shield(self.save())

    async def _keep(self) -> None:
        while True:
            await self._dirty.wait()
            await self.save()
            await asyncio.sleep(self._every)  # the throttle: changes meanwhile wait for one write


def _replace(path: Path, text: str) -> None:
    """Put ``text`` at ``path`` so that a reader, or a crash, sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_state(path: Path, ids: list[str], *, timeout: float) -> fo.BatchState:
    """The state of the file when there is one (the ids must then match), else a new one."""
    state = StateFile.load(path)
    if state is None:
        if not ids:
            raise SystemExit(f"{path} does not exist: give the job ids to start a batch")
        # The deadline is fixed now, once: a resumed run keeps it.
        return fo.BatchState(ids, timeout=timeout)
    if ids and ids != list(state.jobs):
        raise SystemExit(f"{path} holds another batch: give no ids to resume it")
    print(
        f"resuming {path}: {len(state.finished)} of {len(state.jobs)} jobs have their result, "
        f"{sum(job.cancel_accepted for job in state.jobs.values())} cancels were accepted",
        flush=True,
    )
    return state


async def run(
    state_file: StateFile, *, wait_only: bool, poll: fo.PollPolicy, base_url: str | None = None
) -> int:
    """Run the batch to its end from the state; print each result; the exit status."""
    state = state_file.state
    print(f"deadline: {state.deadline.isoformat() if state.deadline else 'none'}", flush=True)
    async with (
        fo.JobManager(base_url=base_url, poll=poll, on_event=state_file.changed) as jobs,
        state_file.kept(),
    ):
        await state_file.save()  # before any request: the deadline is on disk first
        results = (
            jobs.wait_iter(state=state) if wait_only else jobs.cancel_iter(wait=True, state=state)
        )
        failed = 0
        async with contextlib.aclosing(results):
            async for result in results:
                failed += not result.ok
                outcome = result.status if result.ok else f"FAILED {result.error!r}"
                print(f"{result.job_id}: {outcome}", flush=True)
    print(f"{len(state.jobs)} jobs, {failed} failed", flush=True)
    return 1 if failed else 0


async def simulate(path: Path, poll: fo.PollPolicy) -> int:
    """Against simulated jobs: a run stopped after a second, then a second run from the file."""
    async with simulated_jobs(10, cancel_delay=3) as (base_url, ids):
        first = StateFile(path, fo.BatchState(ids, timeout=300))
        with contextlib.suppress(TimeoutError):  # stopped as SIGTERM would: the state saved
            await asyncio.wait_for(run(first, wait_only=False, poll=poll, base_url=base_url), 1)
        print("-- stopped; starting again from the file --", flush=True)
        state = open_state(path, [], timeout=300)
        return await run(StateFile(path, state), wait_only=False, poll=poll, base_url=base_url)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", metavar="ID")
    parser.add_argument("--state", type=Path, metavar="FILE", help="where the state is kept")
    parser.add_argument("--wait", action="store_true", help="wait only: cancel no job")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds, for a new batch")
    parser.add_argument("--poll-interval", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--simulate", action="store_true", help="run against a simulated API")
    args = parser.parse_args()
    poll = fo.PollPolicy(interval=args.poll_interval, max_interval=max(30.0, args.poll_interval))
    # SIGTERM (an orchestrator stopping the worker) ends it as Ctrl-C does: state saved.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        if args.simulate:
            with tempfile.TemporaryDirectory() as tmp:
                return await simulate(args.state or Path(tmp, "batch.json"), poll)
        if args.state is None:
            parser.error("give --state FILE (or --simulate)")
        state = open_state(args.state, args.ids, timeout=args.timeout)
        return await run(StateFile(args.state, state), wait_only=args.wait, poll=poll)
    except asyncio.CancelledError:
        print(f"stopped; run again with --state {args.state} to go on", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
