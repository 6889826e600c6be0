"""Record the live progress bar of a real batch as an SVG for the documentation.

    python docs/scripts/make_progress_svg.py              # writes docs/assets/progress.svg
    python docs/scripts/make_progress_svg.py --out x.svg

It runs what ``finetune-ops demo`` runs (500 running jobs on a simulator in this
process, 5% of requests failing on purpose) through the command line's own
batch driver and live bar, on a recording console, and keeps the busiest
frame below the demo's own introduction.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

from rich.console import Console
from rich.text import Text

from finetune_ops._cli._batch import Plan, Sink, Work, drive
from finetune_ops._cli._config import Connection
from finetune_ops._cli._demo import DEMO_POLL
from finetune_ops._cli._demo import _introduce as introduce
from finetune_ops._cli._progress import LiveBar, Tracker
from finetune_ops.testing import FaultPlan, Lifecycle, Simulator

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "progress.svg"


class BusiestFrame:
    """A live bar on a recording console that keeps its busiest frame.

    The busiest frame shows the most states at once, then the one with most
    jobs both done and to go.
    """

    def __init__(self, tracker: Tracker, console: Console) -> None:
        self._tracker = tracker
        self._console = console
        self._bar = LiveBar(tracker, "Cancelling", console)
        self.period = self._bar.period
        self._rank = (-1, -1)
        #: The kept frame, as text with ANSI styles.
        self.frame = ""

    def start(self) -> None:
        self._bar.start()

    def refresh(self) -> None:
        self._console.export_text(clear=True)  # forget earlier frames
        self._bar.refresh()
        tracker = self._tracker
        rank = (len(tracker.parts()), min(tracker.done, tracker.total - tracker.done))
        frame = self._console.export_text(clear=True, styles=True)
        if rank > self._rank:
            self._rank, self.frame = rank, frame

    def stop(self) -> None:
        self._bar.stop()


async def record(jobs: int = 500, fault_rate: float = 0.05, seed: int = 7) -> str:
    """Run the batch the demo runs; return the SVG of the demo's start and its busiest frame."""
    sim = Simulator(
        lifecycle=Lifecycle(cancel_delay=1.0), faults=FaultPlan(rate=fault_rate, seed=seed)
    )
    ids = sim.add_jobs(jobs, statuses=("running",))
    plan = Plan(cancel=True, wait=True, poll=DEMO_POLL)
    tracker = Tracker(len(ids), unseen=plan.unseen)
    live = _console(io.StringIO())
    display = BusiestFrame(tracker, live)
    sink = Sink(tracker, journal=None, writer=None)
    async with sim.serve() as base_url:
        await drive(Connection(base_url), Work(send=ids), plan, sink, display)
    shown = _console(io.StringIO())
    shown.print("[bold green]$[/] finetune-ops demo")
    introduce(shown, jobs, fault_rate)
    shown.print(Text.from_ansi(display.frame.rstrip("\n")))
    return shown.export_svg(title="finetune-ops demo")


def _console(file: io.StringIO) -> Console:
    return Console(file=file, record=True, force_terminal=True, width=110, color_system="truecolor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(asyncio.run(record()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
