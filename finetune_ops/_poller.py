"""Watching the jobs of one batch until each is terminal, with as few requests as possible.

Each job has its own schedule: its first look comes one interval after its
cancel was accepted (at once when it has no record yet), the next ones further
apart as the policy says. A round happens when a job is due: with more than
``batch_threshold`` jobs waiting, one ``GET /fine-tunes`` answers for all of
them (the list holds every job of the account), and only due ids missing from
it are fetched one by one; with few, each due job is fetched with
``GET /fine-tunes/{id}``, when it is due. Rounds with many jobs are spaced out
(a quarter interval at least, and four times what the cheaper of the last two
spent reading lists), so many jobs falling due one after another share a list
request. Records are structured only for jobs whose status moved, since the
list may hold thousands of unrelated jobs.

The list holds every job the account ever ran, so with few jobs watched among
many (50 among 200,000), reading it costs more than a GET each: a list read
stops once it has cost what GETs of the waiting jobs would, and the poller
fetches each job while the last list's size says that is cheaper.

A look is never retried on its own: the next tick is its retry. After a failed
look that asking again can change, that tick comes after the retry policy's
wait (the server's hint, else its backoff), not a whole interval later: a
stray 503 or reset must not leave a job unseen for an interval. A list that
keeps failing is set aside for a while and every job is fetched on its own
(``_list_standing``); then the list is tried again, so one bad minute does not
cost a long batch its cheap polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from typing import Final

from ._api import FineTunesAPI
from ._errors import (
    AuthenticationError,
    FinetuneOpsError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
)
from ._ledger import Entry, Ledger
from ._list_standing import ListStanding, Verdict
from ._listing import ListMemo
from ._policies import PollPolicy, RetryPolicy
from ._records import FineTuneJob
from ._retry import is_retryable, retry_wait

__all__ = ["Poller", "look_once"]

logger = logging.getLogger("finetune_ops")

_ONE_LOOK: Final = RetryPolicy.no_retry()
#: List entries that cost the client about as much to read as one GET of a job.
_ENTRIES_PER_GET: Final = 50
#: Jobs fetched one by one few enough to be looked at each when due: every round
#: scans all the jobs waiting, so many jobs share spaced-out rounds instead.
_FEW: Final = 8


def _most_entries(waiting: int) -> int:
    """The list entries worth reading for ``waiting`` jobs: one more than GETs would cost."""
    return _ENTRIES_PER_GET * waiting + 1


class Poller:
    """Polls the entries it is given until each is terminal, gone, or the batch halts.

    It ends jobs through the ledger; the batch's deadline is the supervisor's
    to enforce (it cancels the poller). ``run`` returns once :meth:`close` was
    called and nothing is left waiting.
    """

    def __init__(
        self,
        api: FineTunesAPI,
        policy: PollPolicy,
        ledger: Ledger,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._api = api
        self._policy = policy
        self._ledger = ledger
        self._rng = rng or random.Random()
        self._waiting: dict[str, Entry] = {}
        self._wake = asyncio.Event()
        self._closed = False
        self._earliest = math.inf  # the earliest due look among the waiting
        self._next_round = -math.inf  # no round before this: rounds are spaced out
        self._list_again = math.inf  # when a list that failed is tried again
        self._last_cost = math.inf  # what the round before the last spent reading lists
        self._standing = ListStanding(api.gate, api.retry)  # whether the list can be used
        self._round_cost = 0.0  # seconds this round spent reading lists
        self._list_size: int | None = None  # entries in the last list read
        self._by_cost: bool | None = None  # the last choice made by cost: list or not
        self._list_memo = ListMemo()  # the last list's entries: unchanged ones are not decoded

    def add(self, entry: Entry) -> None:
        """Start watching a job: at once if it has no record yet, else one interval from now.

        The first look is timed from when the job was added (its cancel accepted),
        not from the batch's start, so the last jobs of a batch are not found late.
        """
        now = asyncio.get_running_loop().time()
        entry.looks = 0
        entry.due = now if entry.job is None else now + self._delay(0)
        self._waiting[entry.job_id] = entry
        if entry.due < self._earliest:
            self._earliest = entry.due
            self._wake.set()

    def close(self) -> None:
        """No more entries will be added: ``run`` returns once the last one finishes."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting or not self._closed:
            due = min(self._earliest, self._list_again)
            round_at = max(due, self._next_round) if self._waiting else math.inf
            if loop.time() < round_at:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(None if math.isinf(round_at) else round_at):
                        await self._wake.wait()
                self._wake.clear()
                continue  # an entry due earlier may have come meanwhile
            self._round_cost = 0.0
            self._list_again = math.inf
            few = len(self._waiting) <= min(self._policy.batch_threshold, _FEW)
            await self._poll_once(loop.time())
            # A round whose list takes long to read (100,000 jobs) is not repeated back
            # to back: polling gets at most a fifth of the time. Waiting (for the rate
            # gate, through an outage) is no cost: the next round may find everything over.
            # Nor is one costly round, most often one that found many jobs over (their
            # records are read in full): the cheaper of the last two rounds counts.
            # A few jobs fetched one by one share no request: each is looked at when due.
            cost, self._last_cost = min(self._round_cost, self._last_cost), self._round_cost
            spacing = 0.0 if few else self._policy.interval / 4
            self._next_round = loop.time() + max(spacing, 4 * cost)
            self._earliest = min((e.due for e in self._waiting.values()), default=math.inf)

    def _delay(self, looks: int) -> float:
        delay = self._policy.delay(looks)
        jitter = self._policy.jitter
        if jitter:
            delay *= 1.0 + self._rng.uniform(-jitter, jitter)
        return delay

    async def _poll_once(self, now: float) -> None:
        """Look at the entries that are due: one list for all when there are many."""
        entries = list(self._waiting.values())
        due = [entry for entry in entries if entry.due <= now]
        for entry in due:
            entry.looks += 1
            entry.due = now + self._delay(entry.looks)
        if self._use_list(len(entries)):
            rest = await self._poll_list(entries, due)
        else:
            rest = due
        if rest:
            # A task group, not gather: a halt in one look stops the others too.
            async with asyncio.TaskGroup() as group:
                for entry in rest:
                    group.create_task(self._poll_one(entry))

    def _use_list(self, waiting: int) -> bool:
        if waiting <= self._policy.batch_threshold or not self._standing.usable():
            return False
        # The list holds every job of the account: with few watched among many,
        # a GET each costs less than reading it all.
        cheaper = self._list_size is None or self._list_size < _most_entries(waiting)
        if cheaper != self._by_cost:
            self._by_cost = cheaper
            size = self._list_size
            logger.debug(
                "polling %d jobs with %s (the last list had %s entries)",
                waiting,
                "the job list" if cheaper else "one GET each",
                # A read stops where the list has cost what GETs would.
                "unknown" if size is None else size if cheaper else f"at least {size}",
            )
        return cheaper

    async def _poll_list(self, entries: list[Entry], due: list[Entry]) -> list[Entry]:
        """One list request for all the ``entries``; the ``due`` ones to fetch one by one.

        The list answers for every waiting job; of those it does not answer
        for, only the due ones are fetched on their own now.
        """
        known = {e.job_id: (e.job.status if e.job is not None else None) for e in entries}
        try:
            # Read no further than a GET each would cost: the first look at a
            # crowded account costs no more than the GETs that follow it.
            (changed, mentioned, self._list_size), cost = await self._api.list_changes(
                known, retry=_ONE_LOOK, memo=self._list_memo, most=_most_entries(len(entries))
            )
            self._round_cost += cost
        except (AuthenticationError, PermissionDeniedError) as error:
            await self._ledger.refused(None, error)  # the list is the key's: halts
            raise  # not reached
        except FinetuneOpsError as error:
            for entry in entries:
                entry.last_error = error
            return self._list_failed(error, entries, due)
        self._ledger.answered()
        self._standing.answered()
        rest = []
        for entry in entries:
            update = changed.get(entry.job_id)
            if isinstance(update, InvalidResponseError):
                entry.last_error = update
                rest.append(entry)  # its full record may still be readable
            elif update is not None:
                await self._seen(entry, update)
            elif entry.job_id not in mentioned:
                rest.append(entry)
        due_ids = {entry.job_id for entry in due}
        return [
            entry for entry in rest if entry.job_id in self._waiting and entry.job_id in due_ids
        ]

    def _list_failed(
        self, error: FinetuneOpsError, entries: list[Entry], due: list[Entry]
    ) -> list[Entry]:
        """The jobs to fetch on their own this round, after the list failed with ``error``.

        All the ``due`` ones once the list is set aside, none while it is tried
        again soon, and one of the waiting ``entries`` to tell a broken list
        from an API that is going down.
        """
        verdict = self._standing.failed(error)
        if verdict is Verdict.SET_ASIDE:
            return due
        self._list_again = self._look_again(error, max(1, self._standing.failures))
        return (due or entries)[:1] if verdict is Verdict.PROBE else []

    async def _poll_one(self, entry: Entry) -> None:
        try:
            job = await self._api.retrieve(entry.job_id, call=entry, retry=_ONE_LOOK)
        except (AuthenticationError, PermissionDeniedError) as error:
            if self._waiting.pop(entry.job_id, None) is not None:
                await self._ledger.refused(entry, error)
        except NotFoundError as error:
            if self._waiting.pop(entry.job_id, None) is not None:
                await self._ledger.finish(entry, error)
        except FinetuneOpsError as error:
            entry.last_error = error  # keep watching: the deadline decides
            if is_retryable(error, self._api.retry):
                entry.failed_looks += 1
                entry.due = min(entry.due, self._look_again(error, entry.failed_looks))
        else:
            entry.failed_looks = 0
            self._ledger.answered()
            await self._seen(entry, job)

    def _look_again(self, error: FinetuneOpsError, failures: int) -> float:
        """When to look again after ``failures`` failed looks in a row, the last with ``error``.

        A quarter interval at the soonest, as rounds are spaced: a look that keeps
        failing at once is not repeated back to back.
        """
        wait = retry_wait(self._api.retry, error, failures, self._rng)
        return asyncio.get_running_loop().time() + max(wait, self._policy.interval / 4)

    async def _seen(self, entry: Entry, job: FineTuneJob) -> None:
        if entry.job_id not in self._waiting:
            return
        await self._ledger.update(entry, job)
        if job.status.is_terminal:
            del self._waiting[entry.job_id]
            await self._ledger.ended(entry)


async def look_once(
    api: FineTunesAPI, policy: PollPolicy, job_ids: list[str]
) -> dict[str, FineTuneJob | FinetuneOpsError]:
    """One look at each job, with the poller's economy: one list request when there are many.

    Ids the list does not answer for (or when the list fails) are fetched on
    their own. A 401 on the list raises; any other error belongs to its job.
    """
    looks: dict[str, FineTuneJob | FinetuneOpsError] = {}
    unique = list(dict.fromkeys(job_ids))
    rest = unique
    if len(unique) > policy.batch_threshold:
        try:
            (changed, _, _), _ = await api.list_changes(dict.fromkeys(unique), retry=_ONE_LOOK)
        except AuthenticationError:
            raise
        except FinetuneOpsError:
            changed = {}  # every job is fetched on its own instead
        looks.update(
            (job_id, job) for job_id, job in changed.items() if isinstance(job, FineTuneJob)
        )
        rest = [job_id for job_id in unique if job_id not in looks]

    async def look(job_id: str) -> None:
        try:
            looks[job_id] = await api.retrieve(job_id, retry=_ONE_LOOK)
        except FinetuneOpsError as error:
            looks[job_id] = error

    async with asyncio.TaskGroup() as group:
        for job_id in rest:
            group.create_task(look(job_id))
    return {job_id: looks[job_id] for job_id in unique}
