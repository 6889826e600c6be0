"""Whether a batch's poller may use the job list, after the list has failed.

A look is never retried on its own: a failed list is tried again at a later
round. One that keeps failing (three rounds in a row, or once in a way that
asking again cannot change) is set aside for a number of rounds, doubled each
time it fails again, and every due job is fetched on its own meanwhile. What
is the whole API's and not the list's does not count: a 429, or an outage the
rate gate has called. Nor do failures while nothing else answers either: the
API may be going down, which a GET of every due job would only pile onto, so
one job is fetched on its own to tell.
"""

from __future__ import annotations

import enum
import logging
from typing import Final

from ._errors import FinetuneOpsError, RateLimitError
from ._gate import RateGate
from ._policies import RetryPolicy
from ._retry import is_retryable

__all__ = ["ListStanding", "Verdict"]

logger = logging.getLogger("finetune_ops")

#: Failed list rounds in a row after which the jobs are fetched one by one.
_FAILURES: Final = 3
#: Rounds without the list after it failed; doubled each time it fails again.
_REST: Final = 8
_REST_MAX: Final = 64


class Verdict(enum.Enum):
    """What to do after a failed list."""

    AGAIN = "the list is tried again soon"
    PROBE = "one job is fetched on its own, and the list tried again soon"
    SET_ASIDE = "every due job is fetched on its own for a while"


class ListStanding:
    """The list's record of failures for one poller, against one manager's rate gate."""

    def __init__(self, gate: RateGate, retry: RetryPolicy) -> None:
        self._gate = gate
        self._retry = retry
        self._failures = 0  # failed rounds in a row
        self._answers_before = 0  # the gate's answers when the list began failing
        self._rest = _REST  # rounds to go without the list after its next failure
        self._without = 0  # rounds left before the list is tried again
        self._outages_seen = 0  # the gate's outage count when the list was set aside

    @property
    def failures(self) -> int:
        """Failed list rounds in a row."""
        return self._failures

    def usable(self) -> bool:
        """Whether this round may use the list (counts a round set aside)."""
        if self._without and self._gate.outages != self._outages_seen:
            # Set aside while the whole API was going down: its failures were the outage's.
            logger.info("the API answers again; polling with the job list")
            self._without = 0
            self._rest = _REST
        if self._without:
            self._without -= 1
            return False
        return True

    def answered(self) -> None:
        if self._rest > _REST:
            logger.info("the job list answers again; polling with it")
        self._failures = 0
        self._rest = _REST

    def failed(self, error: FinetuneOpsError) -> Verdict:
        gate = self._gate
        if isinstance(error, RateLimitError):
            return Verdict.AGAIN  # a request to slow down, not a broken list
        if gate.in_outage:
            return Verdict.AGAIN  # the gate holds it until the API is up, then it is used again
        if not self._failures:
            self._answers_before = gate.answers
        self._failures += 1
        transient = is_retryable(error, self._retry)
        if transient and self._failures < _FAILURES:
            return Verdict.AGAIN
        if transient and gate.answers == self._answers_before:
            return Verdict.PROBE  # nothing has answered since the list began failing
        logger.warning(
            "the job list cannot be used for polling (%s); fetching each job for %d ticks",
            error,
            self._rest,
        )
        self._without = self._rest
        self._outages_seen = gate.outages
        self._rest = min(2 * self._rest, _REST_MAX)
        self._failures = 0
        return Verdict.SET_ASIDE
