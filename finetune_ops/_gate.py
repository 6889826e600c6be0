"""The gate every request of a manager passes: it finds the account's rate and holds it.

The model is botocore's adaptive retry mode, made smoother and harder to fool:

- **Unpaced until the account throttles.** Requests go as fast as the
  concurrency limit lets them, until a 429 is evidently the account's.
- **Evidence, not a stray 429.** A 429 counts as the account's when its headers
  say the budget is spent (``x-ratelimit-remaining: 0``), or when 429s cluster:
  each 429 adds one to a score and every other answer takes a fifth off, and a
  score of six is evidence. Random 429s (a few percent) never get there; a
  limit that refuses everything until its window resets gets there at once. A
  stray 429 delays only its own request, by its hint.
- **One cut per round trip.** On evidence, everyone waits out the 429's hint
  and the rate drops to 0.7 times the rate measured over the last second.
  A 429 to a request sent before that cut does not cut again.
- **Probing up.** Every half second without a cut, the rate closes half the gap
  to where the last cut happened (at least 5 % a step), and past it grows by
  10 % a step, then 20 %, up to 50 %: fast while far below, careful near the
  old limit, bolder as the old limit proves stale. It never
  exceeds twice the rate actually sent, nor the ceiling
  (``max_requests_per_second``).
- **Headers first.** When answers carry ``x-ratelimit-remaining`` and
  ``x-ratelimit-reset``, what is left of the budget is spread over the time
  left, before any 429; with none left, everyone waits for the reset.
- **503 is not 429.** A 5xx is backed off by its own request's retry and never
  cuts the rate: capacity short of what the account may use says nothing about
  the account's rate.
- **An outage is not a retry storm.** Ten requests in a row without an answer
  (or with a 5xx) start an outage: one probe request at a time, four a second
  at most, while everything else waits, retries included (their backoffs end,
  and a failed try in an outage does not use up an attempt: the deadlines
  decide); the first answer ends it, and everyone goes at once.

Pacing is smooth and first in, first out: each request books the next slot,
and a quiet spell never saves up a burst. Every decision reaches users as a
:class:`RateChanged` event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import attrs

from ._hints import budget_left, retry_hint

__all__ = ["RateChanged", "RateGate", "Ticket"]

logger = logging.getLogger("finetune_ops")

_CUT: Final = 0.7  # the rate after a cut, as a share of the rate before
_EVIDENCE: Final = 6.0  # throttle score at which 429s are the account's
_FORGIVE: Final = 0.2  # taken off the score by each answer that is not a 429
_STEP: Final = 0.5  # seconds between probing steps
_MIN_RATE: Final = 0.5  # requests per second, however hard the throttling
_OUTAGE: Final = 10  # failures in a row that make an outage
_PROBE_EVERY: Final = 0.25  # seconds between probes during an outage
_CHANGES_KEPT: Final = 256


@attrs.frozen(kw_only=True)
class RateChanged:
    """The gate changed how it lets requests go.

    ``rate`` is the pacing rate in requests per second now in force (``None``:
    unpaced; ``0.0``: every request held for now), ``reason`` says why, in a few
    words.
    """

    rate: float | None
    reason: str


class Ticket:
    """One request's pass through the gate, handed back when its answer is known."""

    __slots__ = ("epoch", "probe")

    def __init__(self, epoch: int, probe: bool) -> None:
        self.epoch = epoch  # the number of cuts before it was sent
        self.probe = probe  # sent as an outage probe


class RateGate:
    """Paces the requests of one or more managers on one key; see the module docstring.

    ``max_requests_per_second`` is a ceiling the rate never passes (``None``:
    none). Share one gate between managers that use the same key by passing it
    as ``JobManager(rate_gate=...)``; processes cannot share one, so several
    processes on one key each need a lower ceiling.
    """

    def __init__(
        self,
        max_requests_per_second: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        ceiling = max_requests_per_second
        if ceiling is not None and (
            isinstance(ceiling, bool)
            or not isinstance(ceiling, int | float)
            or not (ceiling > 0 and math.isfinite(ceiling))
        ):
            raise ValueError(f"max_requests_per_second must be a positive number, got {ceiling!r}")
        self._ceiling = None if ceiling is None else float(ceiling)
        self._clock = clock
        self._sleep = sleep
        now = self._started = clock()
        self._rate: float | None = None  # the adaptive rate; None until throttled
        self._peak = 0.0  # the rate at which the last cut happened
        self._beyond = 0  # probing steps taken past it
        self._epoch = 0  # cuts so far
        self._score = 0.0  # how clustered recent 429s are
        self._stepped_at = now  # when the rate last moved
        self._next_slot = -math.inf
        self._paused_until = -math.inf
        self._header_rate: float | None = None  # from x-ratelimit-* headers
        self._header_until = -math.inf
        self._failures = 0  # requests in a row without an answer from the API
        self._outages = 0  # outages that have ended
        self._answers = 0  # answers from the API (a 5xx is none)
        self._probe_out = False
        self._next_probe = -math.inf
        self._in_flight = 0  # requests sent and not yet answered
        self._backing_off: set[asyncio.Future[None]] = set()  # retries waiting out a backoff
        self._sent: deque[float] = deque()  # send times of the last second
        self._changes: deque[RateChanged] = deque(maxlen=_CHANGES_KEPT)
        self._changed = 0  # changes so far
        self.reason = "unpaced"

    def __repr__(self) -> str:
        rate = "unpaced" if self.rate is None else f"{self.rate:.1f}/s"
        return f"<RateGate {rate} ceiling={self._ceiling} reason={self.reason!r}>"

    # -- what users read ---------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """Requests per second now let through (``None``: unpaced)."""
        return self._pace(self._clock())

    @property
    def ceiling(self) -> float | None:
        """``max_requests_per_second``: the rate never goes above it."""
        return self._ceiling

    @property
    def paused_for(self) -> float:
        """Seconds left of a manager-wide wait (an account's 429 hint, a spent budget)."""
        return max(0.0, self._paused_until - self._clock())

    @property
    def in_outage(self) -> bool:
        """Whether the API has stopped answering, and only probes are sent."""
        return self._failures >= _OUTAGE

    @property
    def answers(self) -> int:
        """How many requests the API has answered (anything but a 5xx) so far."""
        return self._answers

    @property
    def outages(self) -> int:
        """How many outages have ended so far."""
        return self._outages

    @property
    def change_count(self) -> int:
        """How many changes the gate has made so far."""
        return self._changed

    def changes_after(self, seen: int) -> tuple[list[RateChanged], int]:
        """The changes since the first ``seen`` ones, and how many there are now."""
        missed = min(self._changed - seen, len(self._changes))
        return list(self._changes)[len(self._changes) - missed :], self._changed

    # -- a request's way through --------------------------------------------------

    async def acquire(self) -> Ticket:
        """Wait until a request may be sent; hand the ticket back with its outcome."""
        while True:
            now = self._clock()
            if (delay := self._paused_until - now) > 0:
                await self._sleep(delay)
                continue
            if self.in_outage:
                if not self._probe_out and now >= self._next_probe:
                    self._next_probe = now + _PROBE_EVERY
                    return self._send(now, probe=True)
                await self._sleep(max(self._next_probe - now, _PROBE_EVERY))
                continue
            self._step_up(now)
            rate = self._pace(now)
            if rate is None:
                return self._send(now, probe=False)
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / rate
            if slot > now:
                # Nothing is counted as sent before the slot: a cancelled wait leaves no trace,
                # and the headers' budget is not spent by requests still waiting here.
                await self._sleep(slot - now)
                now = self._clock()
                if self._paused_until > now or self.in_outage:
                    continue  # things changed while it waited for its slot
            return self._send(now, probe=False)

    def _send(self, now: float, *, probe: bool) -> Ticket:
        self._sent_rate(now)  # forgets sends older than a second
        self._sent.append(now)
        self._in_flight += 1
        self._probe_out = self._probe_out or probe
        return Ticket(self._epoch, probe)

    async def backoff(
        self, seconds: float, sleep: Callable[[float], Awaitable[None]] | None = None
    ) -> None:
        """A failed request's wait before its retry; none while the API is down.

        In an outage the retries wait in :meth:`acquire` instead, where one probe
        at a time goes, and everyone goes as soon as the API answers again; an
        outage that starts cuts short the backoffs already under way.
        """
        if seconds <= 0 or self.in_outage:
            return
        woken = asyncio.get_running_loop().create_future()
        self._backing_off.add(woken)
        sleeping = asyncio.ensure_future((sleep or self._sleep)(seconds))
        try:
            await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._backing_off.discard(woken)
            woken.cancel()
            sleeping.cancel()

    def answered(self, ticket: Ticket, status: int, headers: Mapping[str, str]) -> None:
        """The API answered ``ticket``'s request with ``status``."""
        self._returned(ticket)
        now = self._clock()
        if status >= 500:
            self._failed()
            return
        if self.in_outage:
            self._change("the API answers again")
            self._outages += 1
        self._failures = 0
        self._answers += 1
        spent = self._read_budget(headers, now)
        if status != 429:
            self._score = max(0.0, self._score - _FORGIVE)
        else:
            self._throttled(ticket, headers, spent, now)

    def failed(self, ticket: Ticket) -> None:
        """``ticket``'s request got no answer (refused, reset, timed out)."""
        self._returned(ticket)
        self._failed()

    def released(self, ticket: Ticket) -> None:
        """``ticket``'s request ended without an outcome (it was cancelled)."""
        self._returned(ticket)

    # -- decisions ------------------------------------------------------------------

    def _returned(self, ticket: Ticket) -> None:
        self._in_flight -= 1
        if ticket.probe:
            self._probe_out = False

    def _failed(self) -> None:
        self._failures += 1
        if self._failures == _OUTAGE:
            self._change(f"{_OUTAGE} requests in a row failed: probing the API")
            for woken in self._backing_off:  # their retries now wait for the API instead
                if not woken.done():
                    woken.set_result(None)

    def _read_budget(self, headers: Mapping[str, str], now: float) -> bool:
        """Pace by what the headers say is left; True when they say nothing is."""
        budget = budget_left(headers, time.time())
        if budget is None:
            return False
        remaining, reset = budget
        if reset <= 0:
            return False
        # Requests in flight will spend some of it; about half of them have reached
        # the server already and are counted in what it says is left.
        left = max(1.0, remaining - max(0, self._in_flight) / 2)
        was = self._header_rate if now < self._header_until else None
        self._header_until = now + reset
        if remaining <= 0:
            self._header_rate = None
            if self._paused_until < now + reset:
                self._paused_until = now + reset
                self._change(f"the account's budget is spent for {reset:.2f}s", held=True)
            return True
        self._header_rate = left / reset
        if was is None and self.rate == self._header_rate:
            self._change("pacing by the x-ratelimit headers")
        return False

    def _throttled(
        self, ticket: Ticket, headers: Mapping[str, str], spent: bool, now: float
    ) -> None:
        if spent:
            return  # the headers said so, and paced everyone already
        if ticket.epoch == self._epoch:
            self._score += 1.0  # only requests sent at the rate now in force count
        if self._score < _EVIDENCE:
            return  # a stray 429: its own retry waits its hint
        hint = retry_hint(headers, time.time())
        if hint:
            self._paused_until = max(self._paused_until, now + hint)
        if ticket.epoch != self._epoch:
            return  # sent before the last cut: that cut answered for it
        sent = self._sent_rate(now)
        base = sent if self._rate is None else min(self._rate, sent or self._rate)
        self._peak = base
        self._rate = max(_MIN_RATE, _CUT * base)
        self._epoch += 1
        self._score = 0.0
        self._beyond = 0
        self._stepped_at = now
        self._change("the account is throttling (429s cluster)")

    def _step_up(self, now: float) -> None:
        if self._rate is None:
            return
        steps = int((now - self._stepped_at) / _STEP)
        if steps <= 0:
            return
        self._stepped_at += steps * _STEP
        rate = self._rate
        for _ in range(min(steps, 64)):
            if rate < self._peak:
                rate += max((self._peak - rate) / 2, 0.05 * rate)
            else:
                # Past the old limit, each step a little bolder: the limit may have risen.
                self._beyond += 1
                rate *= 1.0 + 0.1 * min(self._beyond, 5)
        demand = 2 * self._sent_rate(now)
        rate = min(rate, max(demand, self._rate, _MIN_RATE))  # no credit for unused rate
        if self._ceiling is not None:
            rate = min(rate, self._ceiling)
        if rate != self._rate:
            self._rate = rate
            self._change("probing up while requests succeed", level=logging.DEBUG)

    def _pace(self, now: float) -> float | None:
        """The lowest of the adaptive rate, the ceiling and the headers' rate (None: none)."""
        rate = self._rate
        for limit in (self._ceiling, self._header_rate if now < self._header_until else None):
            if limit is not None and (rate is None or limit < rate):
                rate = limit
        return rate

    def _sent_rate(self, now: float) -> float:
        """Requests per second sent over the last second (or since the first, if sooner)."""
        while self._sent and self._sent[0] <= now - 1.0:
            self._sent.popleft()
        span = min(1.0, now - self._started)
        return len(self._sent) / span if span > 0.01 else float(len(self._sent))

    def _change(self, reason: str, *, level: int = logging.INFO, held: bool = False) -> None:
        self.reason = reason
        change = RateChanged(rate=0.0 if held else self.rate, reason=reason)
        self._changes.append(change)
        self._changed += 1
        rate = "unpaced" if change.rate is None else f"{change.rate:.1f} requests/s"
        logger.log(level, "rate gate: %s; %s", reason, rate)
