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

CLIENTS: Final = ("finetune_ops", "raw", "sdk")
#: Clients that run at the scale size (the SDK would take too long to be useful there).
SCALE_CLIENTS: Final = ("finetune_ops", "raw")
DEFAULT_SIZES: Final = (1_000, 10_000)
SCALE_SIZE: Final = 100_000
QUICK_SIZE: Final = 200


@attrs.frozen
class Scenario:
    """N active jobs to cancel and wait for, with or without faults."""

    jobs: int
    fault_rate: float = 0.0

    @property
    def key(self) -> str:
        return f"n{self.jobs}-f{round(self.fault_rate * 100)}"

    @property
    def label(self) -> str:
        faults = f"{self.fault_rate:.0%} faults" if self.fault_rate else "no faults"
        return f"N={self.jobs:,}, {faults}"


def client_timeout(jobs: int) -> float:
    """Seconds a client gets to make every job terminal before it gives up.

    About ten times what the slowest client needs on two busy cores: long enough
    never to cut a working client short, short enough that a stuck one does not
    hold the run for long.
    """
    return 120.0 + jobs * 0.003
