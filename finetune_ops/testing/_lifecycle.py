"""How long a simulated job spends in each status, and which status comes next.

A job walks pending -> queued -> running -> compressing -> uploading ->
completed. Cancelling a job that has not finished moves it to
cancel_requested, and `cancel_delay` seconds later to cancelled. `error` and
`user_error` are terminal too. Any other status string (say "paused") is
kept as it is and never moves by itself, the way a client should treat a
status it does not know.
"""

from __future__ import annotations

import math

import attrs

#: The statuses a healthy job passes through, in order, before "completed".
STAGES: tuple[str, ...] = ("pending", "queued", "running", "compressing", "uploading")
TERMINAL: frozenset[str] = frozenset({"completed", "cancelled", "error", "user_error"})
#: Every status the simulator moves by itself or knows the meaning of.
KNOWN: frozenset[str] = frozenset({*STAGES, "cancel_requested", *TERMINAL})


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    # inf is allowed on purpose: it means "stays in this status until cancelled".
    if math.isnan(value) or value < 0:
        raise ValueError(f"{attribute.name} must be >= 0 seconds, got {value!r}")


@attrs.frozen
class Lifecycle:
    """Seconds a job spends in each status; `math.inf` means "until cancelled".

    The defaults are long (minutes to an hour) so that jobs preloaded as
    pending, queued or running stay active for the whole of a test or a
    benchmark unless someone cancels them or the test advances its clock.
    Cancellation is quick by default: `cancel_delay` seconds from
    cancel_requested to cancelled.
    """

    pending: float = attrs.field(default=60.0, converter=float, validator=_non_negative)
    queued: float = attrs.field(default=300.0, converter=float, validator=_non_negative)
    running: float = attrs.field(default=3600.0, converter=float, validator=_non_negative)
    compressing: float = attrs.field(default=300.0, converter=float, validator=_non_negative)
    uploading: float = attrs.field(default=300.0, converter=float, validator=_non_negative)
    cancel_delay: float = attrs.field(default=1.0, converter=float, validator=_non_negative)

    def duration(self, status: str) -> float:
        """Seconds a job stays in `status` before moving on (inf when it never does)."""
        match status:
            case "pending":
                return self.pending
            case "queued":
                return self.queued
            case "running":
                return self.running
            case "compressing":
                return self.compressing
            case "uploading":
                return self.uploading
            case "cancel_requested":
                return self.cancel_delay
            case _:
                return math.inf

    def remaining_after(self, status: str) -> float:
        """Seconds from leaving `status` until the job completes (0 outside the stages)."""
        if status not in STAGES:
            return 0.0
        later = STAGES[STAGES.index(status) + 1 :]
        return sum((self.duration(stage) for stage in later), 0.0)


def next_status(status: str) -> str | None:
    """The status a job moves to by itself when it leaves `status`, if any."""
    if status == "cancel_requested":
        return "cancelled"
    if status in STAGES:
        index = STAGES.index(status) + 1
        return STAGES[index] if index < len(STAGES) else "completed"
    return None


def history(status: str) -> tuple[str, ...]:
    """Statuses a job has passed through to be in `status` now, `status` included."""
    if status in STAGES:
        return STAGES[: STAGES.index(status) + 1]
    if status == "completed":
        return (*STAGES, "completed")
    # A job is most often cancelled, or fails, while it trains; bad input data
    # (user_error) is found before it gets that far.
    if status == "cancel_requested":
        return ("pending", "queued", "running", "cancel_requested")
    if status == "cancelled":
        return ("pending", "queued", "running", "cancel_requested", "cancelled")
    if status == "error":
        return ("pending", "queued", "running", "error")
    if status == "user_error":
        return ("pending", "user_error")
    return ("pending", status)
