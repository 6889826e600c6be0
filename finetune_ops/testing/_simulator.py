"""`Simulator`: the simulated fine-tunes API as one object to configure, serve and inspect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

from aiohttp import web

from ._account import DEFAULT_PROJECT
from ._app import Service
from ._clock import Clock, ManualClock, RealClock
from ._faults import ENDPOINTS, FaultInjector, FaultKind, FaultPlan, FaultRecord
from ._lifecycle import Lifecycle
from ._ratelimit import RateLimit, RateLimiter
from ._server import serve_app
from ._store import Job, JobStore

#: What `add_jobs` preloads by default: the statuses a cancel still has work to do on.
ACTIVE_STATUSES: tuple[str, ...] = ("pending", "queued", "running")


class Simulator:
    """A simulated Together fine-tunes API.

    Jobs live in memory and move through their lifecycle as `clock` advances
    (read lazily: nothing runs in the background). `faults` decides which
    requests fail and how; `inject()` queues faults for the next requests.
    `rate_limit` refuses requests over its budget with a 429 whose
    `Retry-After` is the time until one would be admitted, and stamps the
    `x-ratelimit-*` headers on every answer.

    With `api_key` set, requests must carry `Authorization: Bearer <api_key>`;
    with None (and no `api_keys`), any or no key is accepted. `api_keys` maps
    several keys to their projects, e.g. `{"key-a": "team-a", "key-b":
    "team-b"}`: each key sees only its project's jobs (list, retrieve, cancel,
    delete, events, checkpoints, metrics, download). Another project's job
    answers 404 "not found", exactly as an id that never existed: the spec
    documents no 403 for any fine-tunes operation, and a 404 tells the caller
    nothing about other projects. `seed` makes ids and job settings repeat
    from run to run.

    `event_types` names the events' `type`: "spec" as the public spec lists
    them (`job_pending`, `model_compressing`, ...), or "legacy" in the older
    upper-case names (`JOB_PENDING`, `COMPRESSING_MODEL`, ...) that together
    SDK 1.x insists on: it refuses a job or an event list with the spec's
    names. Which the live service sends is not settled by the spec; test code
    built on SDK 1.x with "legacy".
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_keys: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        lifecycle: Lifecycle | None = None,
        faults: FaultPlan | None = None,
        rate_limit: RateLimit | None = None,
        seed: int = 0,
        event_types: str = "spec",
    ) -> None:
        if api_key is not None and api_keys is not None:
            raise ValueError("give api_key or api_keys, not both")
        keys = {api_key: DEFAULT_PROJECT} if api_key is not None else api_keys
        if keys is not None:
            keys = dict(keys)
            if not keys or not all(isinstance(key, str) and key for key in keys):
                raise ValueError("api_keys must map at least one non-empty key to a project")
            if not all(isinstance(project, str) and project for project in keys.values()):
                raise ValueError("every project in api_keys must be a non-empty string")
        self._keys = keys
        self._clock: Clock = RealClock() if clock is None else clock
        self._lifecycle = Lifecycle() if lifecycle is None else lifecycle
        self._seed = seed
        self.counters: Counter[str] = Counter(dict.fromkeys(ENDPOINTS, 0))
        #: "http://host:port/v1" while `serve()` is running, else None.
        self.base_url: str | None = None
        if event_types not in ("spec", "legacy"):
            raise ValueError(f"event_types must be 'spec' or 'legacy', got {event_types!r}")
        self._store = JobStore(
            self._clock, self._lifecycle, seed, legacy_events=event_types == "legacy"
        )
        self._faults = FaultInjector(FaultPlan() if faults is None else faults)
        self._limiter = None if rate_limit is None else RateLimiter(rate_limit)
        self._service = Service(self._store, self._faults, self.counters, keys, self._limiter)
        self._requires_key = keys is not None
        self._serving = False

    def __repr__(self) -> str:
        # The key is a secret even in a simulator: say only whether one is needed.
        return (
            f"<Simulator jobs={len(self._store)} auth={'key' if self._requires_key else 'none'}"
            f" base_url={self.base_url!r}>"
        )

    # -- configuration --------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock the jobs' lifecycle follows."""
        return self._clock

    @property
    def lifecycle(self) -> Lifecycle:
        """How long jobs spend in each status."""
        return self._lifecycle

    @property
    def seed(self) -> int:
        """The seed of job ids and settings."""
        return self._seed

    @property
    def faults(self) -> FaultPlan:
        """The random fault plan in force."""
        return self._faults.plan

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        # Replacing the plan restarts its random sequence from the plan's seed.
        self._faults.plan = plan
        self._faults.reseed()

    def inject(self, kind: FaultKind | str, *, endpoint: str | None = None, times: int = 1) -> None:
        """Give the next `times` requests to `endpoint` (any, if None) the fault `kind`.

        Scripted faults come before the random plan's, in the order queued.
        `endpoint` is one of `ENDPOINTS`: "create", "list", "retrieve",
        "cancel", "events", "delete", "checkpoints", "metrics", "download",
        "estimate_price", "model_limits", "supported_models", "whoami".
        """
        self._faults.inject(kind, endpoint=endpoint, times=times)

    def clear_faults(self) -> None:
        """Drop scripted faults that have not struck yet."""
        self._faults.clear()

    def advance(self, seconds: float) -> None:
        """Move a `ManualClock` forward; a shortcut for `sim.clock.advance(seconds)`."""
        if not isinstance(self._clock, ManualClock):
            raise TypeError("advance() needs a ManualClock; this simulator follows real time")
        self._clock.advance(seconds)

    # -- jobs -------------------------------------------------------------------

    def add_job(
        self,
        status: str = "running",
        *,
        id: str | None = None,
        owner: str | None = None,
        model: str | None = None,
        training_file: str | None = None,
        **fields: Any,
    ) -> str:
        """Add a job that is already in `status` and return its id.

        Any status string works: the lifecycle statuses move on by themselves,
        terminal ones ("completed", "cancelled", "error", "user_error") stay,
        and unknown ones (say "paused") stay as they are. `id` chooses the
        job's id (any non-empty string without "/", "?" or "#"; by default a
        seeded "ft-<uuid>"). `owner` is the project the job belongs to, or a
        key of `api_keys` standing for its project (default: the first
        key's). `fields` replace settings of the job's JSON (e.g.
        `n_epochs=3`, `suffix="x"`).
        """
        if not isinstance(status, str) or not status:
            raise ValueError("status must be a non-empty string")
        if id is not None and (
            not isinstance(id, str) or not id or any(char in id for char in "/?# ")
        ):
            raise ValueError(f"id must be a non-empty string without '/?#' or spaces: {id!r}")
        if model is not None:
            fields["model"] = model
        if training_file is not None:
            fields["training_file"] = training_file
        return self._store.add(status, fields, job_id=id, owner=self._owner(owner)).id

    def add_jobs(
        self, n: int, statuses: Sequence[str] = ACTIVE_STATUSES, *, owner: str | None = None
    ) -> list[str]:
        """Add `n` jobs whose statuses cycle through `statuses`; return their ids in order."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        if isinstance(statuses, str) or not statuses or not all(statuses):
            raise ValueError("statuses must be a non-empty sequence of status strings")
        return self._store.add_many(n, tuple(statuses), self._owner(owner))

    def _owner(self, owner: str | None) -> str | None:
        """The project a new job belongs to (None: every caller's)."""
        keys = self._keys
        if keys is None:
            if owner is not None:
                raise ValueError("owner needs api_keys: without keys every caller sees every job")
            return None
        if owner is None:
            return next(iter(keys.values()))
        if owner in keys:
            return keys[owner]
        if owner in keys.values():
            return owner
        raise ValueError(f"owner {owner!r} is neither a key nor a project of api_keys")

    def set_status(self, job_id: str, status: str) -> None:
        """Move a job to `status` now, e.g. to make it fail with "error"."""
        if not isinstance(status, str) or not status:
            raise ValueError("status must be a non-empty string")
        self._store.set_status(self._job(job_id), status)

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as retrieve would return it now (a copy: changing it changes nothing)."""
        result: dict[str, Any] = json.loads(json.dumps(self._store.full(self._job(job_id))))
        return result

    def status(self, job_id: str) -> str:
        """The job's status now."""
        return self._job(job_id).status

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's events as the events endpoint would return them now."""
        return self._store.events(self._job(job_id))

    def job_ids(self) -> list[str]:
        """Every job's id, oldest first."""
        return list(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def _job(self, job_id: str) -> Job:
        job = self._store.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    # -- inspection -------------------------------------------------------------

    @property
    def total_requests(self) -> int:
        """Requests that reached an endpoint, whatever their outcome."""
        return sum(self.counters.values())

    @property
    def rate_limited(self) -> int:
        """How many requests the rate limit refused."""
        return 0 if self._limiter is None else self._limiter.refused

    def reset_counters(self) -> None:
        """Set every endpoint's request count back to zero (the fault log stays)."""
        for name in ENDPOINTS:
            self.counters[name] = 0

    @property
    def fault_log(self) -> list[FaultRecord]:
        """Every fault injected so far, oldest first: (endpoint, kind, job id or None)."""
        return self._faults.log

    # -- serving ----------------------------------------------------------------

    @cached_property
    def app(self) -> web.Application:
        """An aiohttp application serving the API under /v1, for your own runner.

        `serve()` does not use it (it builds a fresh one per run). Outside
        `serve()`, a HANG fault holds its request until the client disconnects,
        so run it with `handler_cancellation=True`.
        """
        return self._service.make_app()

    def make_app(self) -> web.Application:
        """A new application on the same jobs (each one binds to one event loop)."""
        return self._service.make_app()

    @contextlib.contextmanager
    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """`serve()` on an event loop of its own in a background thread; yield the base URL.

        For synchronous clients (the official SDK's `Together()`, requests,
        httpx) that would block the event loop `serve()` runs on. Change the
        simulator (add jobs, advance its clock) between requests, not while a
        request is being answered.
        """
        ready = threading.Event()
        state: dict[str, Any] = {}

        async def run() -> None:
            stop = asyncio.Event()
            state["stop"] = (asyncio.get_running_loop(), stop)
            try:
                async with self.serve(host, port) as base_url:
                    state["url"] = base_url
                    ready.set()
                    await stop.wait()
            except Exception as exc:  # handed to the caller's thread, which raises it
                state["error"] = exc
            finally:
                ready.set()

        thread = threading.Thread(
            target=asyncio.run, args=(run(),), name="finetune-simulator", daemon=True
        )
        thread.start()
        ready.wait()
        try:
            if "url" not in state:
                raise RuntimeError("the simulator did not start") from state.get("error")
            yield state["url"]
        finally:
            if "stop" in state:
                loop, stop = state["stop"]
                with contextlib.suppress(RuntimeError):  # the loop has already ended
                    loop.call_soon_threadsafe(stop.set)
            thread.join()

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve over TCP (port 0 picks a free one) and yield the base URL, ".../v1".

        On exit, requests held by HANG or a delay are let go and the server shuts
        down; open client connections are closed.
        """
        if self._serving:
            raise RuntimeError("this simulator is already being served")
        self._serving = True
        # An asyncio.Event binds to the loop that first waits on it: one per run.
        release = self._service.release = asyncio.Event()

        async def release_held_requests(app: web.Application) -> None:
            release.set()

        app = self.make_app()
        app.on_shutdown.append(release_held_requests)
        try:
            async with serve_app(app, host, port) as root:
                self.base_url = f"{root}/v1"
                yield self.base_url
        finally:
            self.base_url = None
            self._serving = False
