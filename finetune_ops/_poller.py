"""Watching many jobs until each is terminal, with as few requests as possible.

One poller serves one call. Each tick it looks at every job still waiting: with
more than ``batch_threshold`` of them, one ``GET /fine-tunes`` answers for all
(the list holds every job of the account), and only ids missing from it are
fetched one by one; with few, each is fetched with ``GET /fine-tunes/{id}``.
Records are structured only for jobs whose status moved, since the list may
hold thousands of unrelated jobs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable

from ._api import CallState, FineTunesAPI
from ._errors import (
    AuthenticationError,
    FinetuneOpsError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    WaitTimeoutError,
)
from ._policies import PollPolicy
from ._records import FineTuneJob

__all__ = ["FATAL_ERRORS", "Poller", "Waiter"]

logger = logging.getLogger("finetune_ops")

#: Errors that no other job of the batch can escape either.
FATAL_ERRORS = (AuthenticationError, PermissionDeniedError)


class Waiter:
    """One job being watched: its last record, its own requests, its last error."""

    __slots__ = ("call", "job", "job_id", "last_error")

    def __init__(self, job_id: str, job: FineTuneJob | None, call: CallState) -> None:
        self.job_id = job_id
        self.job = job
        self.call = call
        self.last_error: FinetuneOpsError | None = None


Update = Callable[[Waiter, FineTuneJob], Awaitable[None]]
Finish = Callable[[Waiter, FinetuneOpsError | None], Awaitable[None]]
Fatal = Callable[[FinetuneOpsError], Awaitable[None]]


class Poller:
    """Polls its waiters until each is terminal, gone, or out of time.

    ``on_update`` hears every new record of a waiter; ``on_finish`` is called
    once per waiter, with ``None`` when its last record is terminal, else with
    the error that ended it (a WaitTimeoutError at the deadline, whose cause is
    the last polling error, if any). ``deadline`` is on the event loop's clock.
    """

    def __init__(
        self,
        api: FineTunesAPI,
        policy: PollPolicy,
        deadline: float,
        *,
        on_update: Update,
        on_finish: Finish,
        on_fatal: Fatal,
        rng: random.Random | None = None,
    ) -> None:
        self._api = api
        self._policy = policy
        self._deadline = deadline
        self._deadline_or_none = deadline if math.isfinite(deadline) else None
        self._on_update = on_update
        self._on_finish = on_finish
        self._on_fatal = on_fatal
        self._rng = rng or random.Random()
        self._waiting: dict[str, Waiter] = {}
        self._wake = asyncio.Event()
        self._unseen = 0  # waiters added with no record yet: they are looked at at once
        self._closed = False
        self._use_list = True
        self._last_round = 0.0  # seconds the last poll round took

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def add(self, waiter: Waiter) -> None:
        """Start watching a job; one with no record yet is looked at without delay."""
        was_idle = not self._waiting
        self._waiting[waiter.job_id] = waiter
        if waiter.job is None:
            self._unseen += 1
        if was_idle or waiter.job is None:
            self._wake.set()

    def close(self) -> None:
        """No more waiters will be added: ``run`` returns once the last one finishes."""
        self._closed = True
        self._wake.set()

    async def fail_all(self, error: FinetuneOpsError) -> None:
        """End every waiter with ``error``."""
        waiters, self._waiting = list(self._waiting.values()), {}
        for waiter in waiters:
            await self._on_finish(waiter, error)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while self._waiting or not self._closed:
            if not self._waiting:
                await self._wake.wait()
                self._wake.clear()
                continue
            wake_at = min(self._deadline, loop.time() + self._pause(tick))
            while self._waiting and not self._unseen and loop.time() < wake_at:
                try:
                    async with asyncio.timeout_at(wake_at):
                        await self._wake.wait()
                except TimeoutError:
                    break
                self._wake.clear()
            if loop.time() >= self._deadline:
                await self._expire()
                continue
            self._unseen = 0
            started = loop.time()
            try:
                async with asyncio.timeout_at(self._deadline_or_none):
                    await self._poll_once()
            except TimeoutError:
                await self._expire()
            self._last_round = loop.time() - started
            tick += 1

    def _pause(self, tick: int) -> float:
        if self._unseen:
            return 0.0
        delay = self._policy.delay(tick)
        jitter = self._policy.jitter
        if jitter:
            delay *= 1.0 + self._rng.uniform(-jitter, jitter)
        # A round that itself takes long (a list of 100,000 jobs) is not repeated
        # back to back: polling gets at most about half of the time.
        return max(delay, self._last_round)

    async def _expire(self) -> None:
        waiters, self._waiting = list(self._waiting.values()), {}
        for waiter in waiters:
            seen = f"still {str(waiter.job.status)!r}" if waiter.job else "never seen"
            error = WaitTimeoutError(
                f"{waiter.job_id} was {seen} when the wait timed out",
                job_id=waiter.job_id,
                job=waiter.job,
            )
            error.__cause__ = waiter.last_error
            await self._on_finish(waiter, error)

    async def _poll_once(self) -> None:
        waiters = list(self._waiting.values())
        if self._use_list and len(waiters) > self._policy.batch_threshold:
            waiters = await self._poll_list(waiters)
        if waiters:
            await asyncio.gather(*(self._poll_one(waiter) for waiter in waiters))

    async def _poll_list(self, waiters: list[Waiter]) -> list[Waiter]:
        """One list request for all; returns the waiters it could not answer for."""
        known = {w.job_id: (w.job.status if w.job else None) for w in waiters}
        try:
            changed, mentioned = await self._api.list_changes(known)
        except FATAL_ERRORS as error:
            await self._on_fatal(error)
            return []
        except InvalidResponseError as error:
            # Too large or unreadable even after retries: one GET per job from now on.
            logger.warning("the job list cannot be used for polling (%s); polling each job", error)
            self._use_list = False
            return waiters
        except FinetuneOpsError as error:
            for waiter in waiters:
                waiter.last_error = error
            return []  # next tick tries again
        for waiter in waiters:
            update = changed.get(waiter.job_id)
            if isinstance(update, InvalidResponseError):
                waiter.last_error = update
            elif update is not None:
                await self._seen(waiter, update)
        return [waiter for waiter in waiters if waiter.job_id not in mentioned]

    async def _poll_one(self, waiter: Waiter) -> None:
        try:
            job = await self._api.retrieve(waiter.job_id, call=waiter.call)
        except FATAL_ERRORS as error:
            await self._on_fatal(error)
        except NotFoundError as error:
            if self._waiting.pop(waiter.job_id, None) is not None:
                await self._on_finish(waiter, error)
        except FinetuneOpsError as error:
            waiter.last_error = error  # keep waiting: the deadline decides
        else:
            await self._seen(waiter, job)

    async def _seen(self, waiter: Waiter, job: FineTuneJob) -> None:
        if waiter.job_id not in self._waiting:
            return  # ended meanwhile (a fatal error)
        await self._on_update(waiter, job)
        waiter.job = job
        if job.status.is_terminal:
            del self._waiting[waiter.job_id]
            await self._on_finish(waiter, None)
