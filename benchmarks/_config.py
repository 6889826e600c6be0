"""What a benchmark run is made of: the fixed conditions and the scenarios."""

from __future__ import annotations

from typing import Final

import attrs

#: Seconds of simulated latency on every request.
LATENCY: Final = 0.005
#: Seconds from cancel_requested to cancelled in the simulator.
CANCEL_DELAY: Final = 1.0
#: HTTP requests in flight at most, for every client.
CONCURRENCY: Final = 64
#: Seconds between two looks at the same job, for every client (fixed, no growth, no jitter).
POLL_INTERVAL: Final = 0.5
#: The simulator's seed: every client run gets the same job ids and fault sequence.
SEED: Final = 20_260_101
#: Share of requests that fail in the fault scenarios.
FAULT_RATE: Final = 0.10
#: Fault kinds drawn from in the fault scenarios: 5xx, 429 with Retry-After, resets.
FAULT_KINDS: Final = ("server_error_500", "unavailable_503", "rate_limit_seconds", "reset")
#: A bearer key the simulator accepts (it accepts any); every client sends it.
API_KEY: Final = "bench-not-a-real-key"

TERMINAL: Final = frozenset({"completed", "cancelled", "error", "user_error"})

CLIENTS: Final = ("finetune_ops", "raw", "sdk", "floor")
#: Clients that run at the scale size (the SDK would take too long to be useful there).
SCALE_CLIENTS: Final = ("finetune_ops", "raw", "floor")
DEFAULT_SIZES: Final = (1_000, 10_000)
SCALE_SIZE: Final = 100_000
QUICK_SIZE: Final = 200


#: Jobs in each rate scenario (issue 15), and in the quick run's.
RATE_SIZE: Final = 5_000
QUICK_RATE_SIZE: Final = 200
#: The fixed budget of the rate scenarios, requests per second (quick: smaller, same shape).
RATE_BUDGET: Final = 500
QUICK_RATE_BUDGET: Final = 300

#: The crowded account: jobs watched, and finished jobs listed before them (quick: fewer).
CROWDED_JOBS: Final = 50
CROWDED_ACCOUNT: Final = 200_000
QUICK_CROWDED_ACCOUNT: Final = 20_000


@attrs.frozen
class Scenario:
    """N active jobs to cancel and wait for, with or without faults.

    ``kind`` is "plain", or one of the rate scenarios: "budget" (a fixed limit
    of ``rate`` req/s), "dynamic" (``rate`` that halves from ``change_at`` s
    for ``change_for`` s, then recovers) or "outage" (every request answered
    503 from ``change_at`` s into the run, for ``change_for`` s); or "crowded":
    the N jobs listed after ``finished`` finished jobs of the same account.
    """

    jobs: int
    fault_rate: float = 0.0
    kind: str = "plain"
    rate: int = 0
    change_at: float = 0.0
    change_for: float = 0.0
    finished: int = 0

    @property
    def key(self) -> str:
        if self.kind == "plain":
            return f"n{self.jobs}-f{round(self.fault_rate * 100)}"
        return f"n{self.jobs}-{self.kind}"

    @property
    def label(self) -> str:
        if self.kind == "budget":
            return f"N={self.jobs:,}, budget {self.rate} req/s"
        if self.kind == "dynamic":
            return f"N={self.jobs:,}, budget {self.rate} req/s halved for {self.change_for:g} s"
        if self.kind == "outage":
            return f"N={self.jobs:,}, {self.change_for:g} s outage"
        if self.kind == "crowded":
            return f"N={self.jobs:,} among {self.jobs + self.finished:,} jobs"
        faults = f"{self.fault_rate:.0%} faults" if self.fault_rate else "no faults"
        return f"N={self.jobs:,}, {faults}"

    def server_args(self) -> list[str]:
        """The simulator's options for this scenario."""
        args = ["--fault-rate", str(self.fault_rate)]
        if self.rate:
            args += ["--rate", str(self.rate)]
        if self.kind == "dynamic":
            end = self.change_at + self.change_for
            args += ["--schedule", f"{self.change_at}:{self.rate // 2},{end}:{self.rate}"]
        if self.kind == "outage":
            args += ["--outage-at", str(self.change_at), "--outage-for", str(self.change_for)]
        if self.finished:
            args += ["--finished", str(self.finished)]
        return args


def crowded_scenario(quick: bool) -> Scenario:
    """Issue 14's crowded account: polling must cost what the watched jobs need, not the list."""
    finished = QUICK_CROWDED_ACCOUNT if quick else CROWDED_ACCOUNT
    return Scenario(jobs=CROWDED_JOBS, kind="crowded", finished=finished)


def rate_scenarios(quick: bool) -> list[Scenario]:
    """Issue 15's scenarios: random faults, a fixed budget, a dynamic one, an outage."""
    if quick:
        n, rate = QUICK_RATE_SIZE, QUICK_RATE_BUDGET
        return [
            Scenario(jobs=n, kind="budget", rate=rate),
            Scenario(jobs=n, kind="dynamic", rate=rate, change_at=1.5, change_for=1.0),
            Scenario(jobs=n, kind="outage", change_at=0.3, change_for=1.0),
        ]
    n, rate = RATE_SIZE, RATE_BUDGET
    return [
        Scenario(jobs=10_000, fault_rate=FAULT_RATE),
        Scenario(jobs=n, kind="budget", rate=rate),
        # The limiter's clock starts with the simulator, about a second before the client.
        Scenario(jobs=n, kind="dynamic", rate=rate, change_at=6.0, change_for=8.0),
        Scenario(jobs=n, kind="outage", change_at=1.0, change_for=10.0),
    ]


def client_timeout(jobs: int) -> float:
    """Seconds a client gets to make every job terminal before it gives up.

    About ten times what the slowest client needs on two busy cores: long enough
    never to cut a working client short, short enough that a stuck one does not
    hold the run for long.
    """
    return 120.0 + jobs * 0.003
