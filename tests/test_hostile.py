"""Truthful outcomes against servers that misbehave as real gateways, proxies and new APIs do.

These servers are written here, not taken from the simulator, so that the
library is tried against answers nobody designed it for. Each test names the
class of failure it guards against.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
from aiohttp import web

from finetune_ops import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    CancelAccepted,
    Event,
    InternalServerError,
    InvalidResponseError,
    JobFinished,
    JobManager,
    PermissionDeniedError,
    PollPolicy,
    RetryEvent,
    RetryPolicy,
    Timeouts,
    WaitTimeoutError,
)
from finetune_ops._api import FineTunesAPI

ServeApp = Callable[[web.Application], AbstractAsyncContextManager[str]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FAST_RETRY = RetryPolicy(wait_initial=0, wait_max=0, wait_jitter=0)
FAST_POLL = PollPolicy(interval=0.01, growth=1.0, jitter=0)
TERMINAL = {"completed", "cancelled", "error", "user_error"}
DEEP = "[" * 100_000 + "]" * 100_000


class FakeAPI:
    """A small fine-tunes server: jobs by id, request counts, and per-endpoint overrides.

    A cancel answers ``cancel_requested`` and the job is ``cancelled`` from then
    on; ``on[endpoint]`` replaces an endpoint's handler. ``hang()`` holds a
    request until the server stops.
    """

    def __init__(self, jobs: dict[str, str]) -> None:
        self.jobs = dict(jobs)
        self.counts: Counter[str] = Counter()
        self.on: dict[str, Handler] = {}
        self._release = asyncio.Event()

    def entry(self, job_id: str) -> dict[str, object]:
        return {"id": job_id, "status": self.jobs[job_id], "model": "m"}

    def app(self) -> web.Application:
        app = web.Application()
        routes = {
            ("GET", "/v1/fine-tunes"): ("list", self._list),
            ("GET", "/v1/fine-tunes/{id}"): ("retrieve", self._retrieve),
            ("POST", "/v1/fine-tunes/{id}/cancel"): ("cancel", self._cancel),
        }
        for (method, path), (name, handler) in routes.items():
            app.router.add_route(method, path, self._counted(name, handler))

        async def release(app: web.Application) -> None:
            self._release.set()

        app.on_shutdown.append(release)
        return app

    def _counted(self, name: str, handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.counts[name] += 1
            return await self.on.get(name, handler)(request)

        return handle

    async def hang(self, request: web.Request) -> web.StreamResponse:
        await self._release.wait()
        return web.Response(status=503)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": [self.entry(job_id) for job_id in self.jobs]})

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["id"]
        if job_id not in self.jobs:
            return web.json_response({"error": {"message": "no such job"}}, status=404)
        return web.json_response(self.entry(job_id))

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["id"]
        if job_id not in self.jobs:
            return web.json_response({"error": {"message": "no such job"}}, status=404)
        if self.jobs[job_id] in TERMINAL:
            return web.json_response({"error": {"message": "job has ended"}}, status=400)
        self.jobs[job_id] = "cancelled"
        return web.json_response({"id": job_id, "status": "cancel_requested"})

    async def until(self, name: str, count: int) -> None:
        """Return once ``name`` has been asked ``count`` times."""
        while self.counts[name] < count:  # noqa: ASYNC110 - the counter lives in the server
            await asyncio.sleep(0.002)


def running(n: int, prefix: str = "ft-") -> dict[str, str]:
    return {f"{prefix}{i}": "running" for i in range(n)}


def error_response(status: int, message: str = "no") -> web.Response:
    return web.json_response({"error": {"message": message, "type": "x"}}, status=status)


@contextlib.asynccontextmanager
async def manager(url: str, **options: object) -> AsyncIterator[JobManager]:
    settings: dict[str, object] = {"retry": FAST_RETRY, "poll": FAST_POLL, **options}
    async with JobManager(base_url=url, **settings) as jobs:  # type: ignore[arg-type]
        yield jobs


# -- 1. polling survives a broken list ------------------------------------------------


@pytest.mark.parametrize("failure", ["503", "404", "hang"])
async def test_a_broken_list_falls_back_to_per_job_gets(serve_app: ServeApp, failure: str) -> None:
    """A list that keeps failing (5xx, 404, no answer) while GETs work: jobs are fetched each."""
    api = FakeAPI(running(20))

    async def broken(request: web.Request) -> web.StreamResponse:
        if failure == "hang":
            return await api.hang(request)
        return error_response(int(failure))

    api.on["list"] = broken
    async with serve_app(api.app()) as url, manager(url, timeouts=Timeouts(request=0.2)) as jobs:
        task = asyncio.create_task(jobs.wait_many(list(api.jobs), timeout=60))
        await api.until("retrieve", 20)
        api.jobs = dict.fromkeys(api.jobs, "completed")
        report = await task
    assert report.by_status == {"completed": 20}
    # A 404 cannot change: set aside at once. Else three failures, one job fetched
    # on its own (it answers: the list is broken, not the API), one more failure.
    assert api.counts["list"] == (1 if failure == "404" else 4)


async def test_the_list_is_tried_again_later(serve_app: ServeApp) -> None:
    """After a bad spell the poller returns to the list and stops fetching each job."""
    api = FakeAPI(running(20))
    list_ok = api._list

    async def flaky(request: web.Request) -> web.StreamResponse:
        return error_response(503) if api.counts["list"] <= 4 else await list_ok(request)

    api.on["list"] = flaky
    async with serve_app(api.app()) as url, manager(url) as jobs:
        task = asyncio.create_task(jobs.wait_many(list(api.jobs), timeout=60))
        await api.until("list", 5)
        fetched = api.counts["retrieve"]
        await api.until("list", 8)
        assert api.counts["retrieve"] == fetched  # the list answers for everyone again
        api.jobs = dict.fromkeys(api.jobs, "completed")
        report = await task
    assert report.by_status == {"completed": 20}
    assert fetched >= 20


# -- 2. only the list's own entries are jobs -----------------------------------------


async def test_nested_objects_in_the_list_are_not_jobs(serve_app: ServeApp) -> None:
    """An id and status nested inside an entry never stand for a job, nor hide one."""
    api = FakeAPI({**running(10), "ft-watched": "running", "ft-done": "completed"})

    async def listing(request: web.Request) -> web.StreamResponse:
        data = [api.entry(job_id) for job_id in api.jobs]
        # Another entry mentions the running job as cancelled, deep inside it.
        data[0]["events"] = [{"id": "ft-watched", "status": "cancelled", "message": "x"}]
        data[0]["note"] = {"job": {"id": "ft-watched", "status": "cancelled"}}
        # A finished job's own events carry ids and statuses of their own.
        data[-1]["events"] = [{"id": "ev-1", "status": "ok", "message": "step"}]
        return web.json_response({"data": data})

    api.on["list"] = listing
    async with serve_app(api.app()) as url, manager(url) as jobs:
        report = await jobs.wait_many(list(api.jobs), timeout=0.5)
    by_id = {result.job_id: result for result in report}
    assert isinstance(by_id["ft-watched"].error, WaitTimeoutError)
    assert by_id["ft-watched"].status == "running"
    assert by_id["ft-done"].ok
    assert by_id["ft-done"].status == "completed"


# -- 3. no exception escapes translation ---------------------------------------------


async def test_a_deeply_nested_body_is_an_invalid_response(serve_app: ServeApp) -> None:
    """JSON nested 100,000 deep, in answers and in error bodies, is our error for that request."""
    api = FakeAPI(running(3))

    async def deep_cancel(request: web.Request) -> web.StreamResponse:
        return web.Response(text=DEEP, content_type="application/json")

    async def deep_error(request: web.Request) -> web.StreamResponse:
        body = '{"error": {"message": ' + DEEP + "}}"
        return web.Response(text=body, status=500, content_type="application/json")

    api.on["cancel"] = deep_cancel
    api.on["retrieve"] = deep_error
    # Only 500s from then on look like an outage, whose tries only the deadline bounds.
    retry = RetryPolicy(wait_initial=0, wait_max=0, wait_jitter=0, deadline=1.0)
    async with serve_app(api.app()) as url, manager(url, retry=retry) as jobs:
        report = await jobs.cancel_many(list(api.jobs))
        with pytest.raises(InternalServerError):
            await jobs.retrieve("ft-0")
    assert len(report) == 3
    for result in report:
        assert result.cancel_sent  # a 2xx: the cancel was accepted, however unreadable
        assert isinstance(result.error, InvalidResponseError | InternalServerError)
    assert api.counts["cancel"] == 3  # nested too deeply is not something a retry changes


# -- 4. a batch never hangs and never loses results ---------------------------------


async def test_a_callback_raising_cancelled_error_loses_nothing(serve_app: ServeApp) -> None:
    """A CancelledError from on_event is the callback's bug: contained, logged, results whole."""
    api = FakeAPI(running(30))

    def callback(event: Event) -> None:
        raise asyncio.CancelledError

    async with serve_app(api.app()) as url, manager(url, on_event=callback) as jobs:
        report = await jobs.cancel_many(list(api.jobs), wait=True, timeout=30)
    assert report.by_status == {"cancelled": 30}


async def test_a_batch_cancelled_from_outside_says_so(serve_app: ServeApp) -> None:
    """The batch's task cancelled by someone else: an error naming the missing results."""
    api = FakeAPI(running(20))
    api.on["cancel"] = api.hang
    async with serve_app(api.app()) as url, manager(url, max_concurrency=2) as jobs:
        task = asyncio.create_task(jobs.cancel_many(list(api.jobs)))
        await api.until("cancel", 2)
        [batch] = [t for t in asyncio.all_tasks() if t.get_name() == "finetune_ops batch"]
        batch.cancel()
        with pytest.raises(RuntimeError, match="20 of 20 results missing"):
            await task


# -- 5. misuse is a plain RuntimeError ------------------------------------------------


async def test_a_closed_caller_session_is_a_runtime_error(serve_app: ServeApp) -> None:
    """The caller's session closed under queued requests: RuntimeError, not an ExceptionGroup."""
    api = FakeAPI(running(10))
    api.on["cancel"] = api.hang
    async with serve_app(api.app()) as url:
        session = aiohttp.ClientSession()
        async with manager(url, session=session, max_concurrency=1) as jobs:
            task = asyncio.create_task(jobs.cancel_many(list(api.jobs)))
            await api.until("cancel", 1)
            await session.close()
            with pytest.raises(RuntimeError, match=r"(?i)session"):
                await task
            with pytest.raises(RuntimeError, match=r"[Ss]ession is closed"):
                await jobs.cancel("ft-1")


async def test_cancel_iter_after_close_is_a_runtime_error(serve_app: ServeApp) -> None:
    """An iterator made before aclose() and read after it raises a plain RuntimeError."""
    api = FakeAPI(running(3))
    async with serve_app(api.app()) as url:
        jobs = JobManager(base_url=url)
        results = jobs.cancel_iter(list(api.jobs))
        await jobs.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await anext(results)
    assert api.counts["cancel"] == 0


# -- 6. the deadline bounds the whole call ---------------------------------------------


@pytest.mark.parametrize("wait", [False, True])
async def test_the_deadline_bounds_the_cancel_phase(serve_app: ServeApp, wait: bool) -> None:
    """Cancels that never answer end at the deadline, each saying whether it may have landed."""
    api = FakeAPI(running(3))
    api.on["cancel"] = api.hang
    async with serve_app(api.app()) as url, manager(url, max_concurrency=1) as jobs:
        report = await jobs.cancel_many(list(api.jobs), wait=wait, timeout=0.3)
        with pytest.raises(WaitTimeoutError, match="may have reached the server"):
            await jobs.cancel("ft-0", timeout=0.2)
    errors = [result.error for result in report]
    assert all(isinstance(error, WaitTimeoutError) for error in errors)
    in_doubt = [e.cancel_in_doubt for e in errors if isinstance(e, WaitTimeoutError)]
    assert in_doubt == [True, False, False]  # one in flight; two never sent
    assert "not sent yet" in str(errors[1])
    assert not any(result.cancel_sent for result in report)


async def test_the_deadline_cuts_retries_short(serve_app: ServeApp) -> None:
    """A cancel that keeps failing is not retried past the call's deadline."""
    api = FakeAPI(running(1))

    async def unavailable(request: web.Request) -> web.StreamResponse:
        return error_response(503)

    api.on["cancel"] = unavailable
    retry = RetryPolicy(attempts=100, deadline=600, wait_initial=0.05, wait_max=0.05)
    async with serve_app(api.app()) as url, manager(url, retry=retry) as jobs:
        with pytest.raises(WaitTimeoutError) as info:
            await jobs.cancel("ft-0", timeout=0.3)
    assert info.value.cancel_in_doubt
    assert isinstance(info.value.__cause__, type(None) | InternalServerError)
    assert api.counts["cancel"] < 100


# -- 7. a cancel already in progress is not a failure ----------------------------------


async def test_a_cancel_in_progress_is_accepted(serve_app: ServeApp) -> None:
    """A 400 to a cancel for a job already cancel_requested: accepted, then waited for."""
    api = FakeAPI({"ft-a": "cancel_requested"})
    looks = 0

    async def refuse(request: web.Request) -> web.StreamResponse:
        return error_response(400, "a cancel is already in progress")

    async def retrieve(request: web.Request) -> web.StreamResponse:
        nonlocal looks
        looks += 1
        status = "cancel_requested" if looks < 3 else "cancelled"
        return web.json_response({"id": "ft-a", "status": status})

    api.on["cancel"] = refuse
    api.on["retrieve"] = retrieve
    async with serve_app(api.app()) as url, manager(url) as jobs:
        report = await jobs.cancel_many(["ft-a"], wait=True, timeout=30)
        looks = 0
        job = await jobs.cancel("ft-a")
    [result] = report.results
    assert result.ok
    assert result.cancel_sent
    assert result.status == "cancelled"
    assert job.status == "cancel_requested"


# -- 8. one job's 403 does not stop a batch --------------------------------------------


async def test_one_forbidden_job_fails_alone(serve_app: ServeApp) -> None:
    """A job of another project fails with 403; every other job of the batch goes on."""
    api = FakeAPI(running(99))
    api.jobs["ft-theirs"] = "running"
    cancel = api._cancel

    async def cancel_ours(request: web.Request) -> web.StreamResponse:
        if request.match_info["id"] == "ft-theirs":
            return error_response(403, "this job belongs to another project")
        return await cancel(request)

    api.on["cancel"] = cancel_ours
    async with serve_app(api.app()) as url, manager(url, max_concurrency=4) as jobs:
        report = await jobs.cancel_many(["ft-theirs", *running(99)], wait=True, timeout=30)
    assert report.by_error == {"PermissionDeniedError": 1}
    assert report.by_status == {"cancelled": 99}


async def test_forbidden_everywhere_halts_the_batch(serve_app: ServeApp) -> None:
    """403 for several distinct jobs with no success between: it is the key, so the batch stops."""
    api = FakeAPI(running(200))

    async def forbidden(request: web.Request) -> web.StreamResponse:
        return error_response(403, "this key may not cancel jobs")

    api.on["cancel"] = forbidden
    async with serve_app(api.app()) as url, manager(url, max_concurrency=2) as jobs:
        report = await jobs.cancel_many(list(api.jobs))
    assert report.by_error == {"PermissionDeniedError": 200}
    assert api.counts["cancel"] <= 3 + 2  # three distinct jobs, and what was in flight


@pytest.mark.parametrize(
    ("status", "error"), [(401, AuthenticationError), (403, PermissionDeniedError)]
)
async def test_refused_list_poll_is_fatal(
    serve_app: ServeApp, status: int, error: type[Exception]
) -> None:
    """A 401 or 403 on the list is the key's: every job gets it, none is fetched on its own."""
    api = FakeAPI(running(20))

    async def refused(request: web.Request) -> web.StreamResponse:
        return error_response(status)

    api.on["list"] = refused
    async with serve_app(api.app()) as url, manager(url) as jobs:
        report = await jobs.wait_many(list(api.jobs), timeout=30)
    assert report.by_error == {error.__name__: 20}
    assert api.counts["retrieve"] == 0


# -- 9. a field the library does not need never fails a job ----------------------------


async def test_odd_fields_do_not_fail_the_job(serve_app: ServeApp) -> None:
    """Fields in unexpected shapes are left out and named; the accepted cancel counts as sent."""
    api = FakeAPI(running(12))
    cancel = api._cancel
    odd = {"created_at": 1_700_000_000, "n_epochs": "3", "training_type": "Lora", "events": {}}

    async def odd_cancel(request: web.Request) -> web.StreamResponse:
        await cancel(request)
        return web.json_response(
            {"id": request.match_info["id"], "status": "cancel_requested", **odd}
        )

    async def odd_list(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": [{**api.entry(job_id), **odd} for job_id in api.jobs]})

    api.on["cancel"] = odd_cancel
    api.on["list"] = odd_list
    async with serve_app(api.app()) as url, manager(url) as jobs:
        report = await jobs.cancel_many(list(api.jobs), wait=True, timeout=30)
    assert report.by_status == {"cancelled": 12}
    for result in report:
        assert result.cancel_sent
        assert result.job is not None
        assert set(result.job.unparsed_fields) == set(odd)


async def test_an_unreadable_2xx_to_a_cancel_is_still_sent(serve_app: ServeApp) -> None:
    """A 2xx whose body cannot be read: the cancel was accepted, and the job is then watched."""
    api = FakeAPI(running(3))
    cancel = api._cancel

    async def garbled(request: web.Request) -> web.StreamResponse:
        await cancel(request)
        return web.Response(text='{"id": "ft-', content_type="application/json")

    api.on["cancel"] = garbled
    async with serve_app(api.app()) as url, manager(url, retry=RetryPolicy.no_retry()) as jobs:
        report = await jobs.cancel_many(list(api.jobs), wait=True, timeout=30)
    assert report.by_status == {"cancelled": 3}
    assert all(result.cancel_sent for result in report)


# -- 10. stale pooled connections are not faults ---------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return head


@contextlib.asynccontextmanager
async def drops_reused_connections() -> AsyncIterator[tuple[str, Counter[str]]]:
    """A server that answers the first request of a connection and drops the connection at the
    second, before a byte of its answer: what a server closing idle keep-alives looks like."""
    counts: Counter[str] = Counter()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            served = 0
            while (head := await _read_request(reader)) is not None:
                counts["requests"] += 1
                if served:
                    counts["dropped"] += 1
                    break
                job_id = head.split(b" ")[1].split(b"/")[3].decode()
                body = json.dumps({"id": job_id, "status": "cancel_requested"}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                served += 1
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", counts
    finally:
        server.close()
        await server.wait_closed()


async def test_a_stale_connection_is_tried_again_at_once() -> None:
    """A cancel that meets a dropped pooled connection is resent once, without a retry."""
    heard: list[Event] = []
    async with (
        drops_reused_connections() as (url, counts),
        manager(
            url, max_concurrency=1, on_event=heard.append, retry=RetryPolicy(wait_initial=30)
        ) as jobs,
    ):
        report = await jobs.cancel_many([f"ft-{i}" for i in range(5)])
    assert report.by_status == {"cancel_requested": 5}
    assert [result.attempts for result in report] == [1] * 5
    assert not [event for event in heard if isinstance(event, RetryEvent)]
    assert counts["dropped"] == 4  # every job but the first met a stale connection


# -- 11. retry only what can change -------------------------------------------------------


async def test_a_body_over_the_cap_is_fetched_once(serve_app: ServeApp) -> None:
    """A body over the size cap would come back the same: it is not retried."""
    api = FakeAPI(running(1))

    async def huge(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "ft-0", "status": "running", "pad": "x" * 4096})

    api.on["retrieve"] = huge
    async with serve_app(api.app()) as url:
        client = FineTunesAPI(base_url=url, retry=FAST_RETRY, max_body_size=1024)
        try:
            with pytest.raises(InvalidResponseError, match="cap"):
                await client.retrieve("ft-0")
        finally:
            await client.aclose()
    assert api.counts["retrieve"] == 1


async def test_a_list_of_the_wrong_shape_is_fetched_once(serve_app: ServeApp) -> None:
    """list() and polling read the list by one rule: JSON of the wrong shape is not retried."""
    api = FakeAPI(running(1))

    async def wrong(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": {"jobs": []}})

    api.on["list"] = wrong
    async with serve_app(api.app()) as url, manager(url) as jobs:
        with pytest.raises(InvalidResponseError, match="'data' is not a list"):
            await jobs.list()
    assert api.counts["list"] == 1


# -- 12. an outage is not a retry storm --------------------------------------------------


async def test_an_outage_holds_retries_and_releases_them_when_it_ends(serve_app: ServeApp) -> None:
    """While the API is down, retries neither sleep out long backoffs nor use up attempts."""
    api = FakeAPI(running(30))
    cancel = api._cancel
    dark_for = 35  # the first cancels all get a 503: 30 first tries, then a few probes

    async def outage(request: web.Request) -> web.StreamResponse:
        if api.counts["cancel"] <= dark_for:
            return error_response(503, "down")
        return await cancel(request)

    api.on["cancel"] = outage
    # Backoffs of an hour and three attempts: only the gate's outage handling ends this.
    retry = RetryPolicy(attempts=3, wait_initial=3600, wait_max=3600, wait_jitter=0, deadline=1e5)
    async with serve_app(api.app()) as url, manager(url, retry=retry) as jobs:
        async with asyncio.timeout(60):
            report = await jobs.cancel_many(api.jobs)
        assert not jobs.rate_gate.in_outage
    assert report.all_ok
    assert api.counts["cancel"] == dark_for + 30  # one probe at a time, then one cancel each


def go_down_after_cancels(api: FakeAPI, dark_for: int, retrieve: Handler | None = None) -> None:
    """Once every cancel is in, the API answers 503 to the next ``dark_for`` lists and GETs.

    ``retrieve`` answers the GETs once it is back (by default, the server's own).
    """
    phase = "up"
    jobs = len(api.jobs)
    list_jobs, get_job = api._list, retrieve or api._retrieve

    async def cancel(request: web.Request) -> web.StreamResponse:
        nonlocal phase
        answer = await FakeAPI._cancel(api, request)
        if api.counts["cancel"] == jobs:
            phase = "down"
        return answer

    def down() -> bool:
        nonlocal phase
        if phase == "down" and api.counts["list"] + api.counts["retrieve"] > dark_for:
            phase = "back"
        return phase == "down"

    async def listing(request: web.Request) -> web.StreamResponse:
        return error_response(503, "down") if down() else await list_jobs(request)

    async def looking(request: web.Request) -> web.StreamResponse:
        return error_response(503, "down") if down() else await get_job(request)

    api.on.update(cancel=cancel, list=listing, retrieve=looking)


async def test_after_an_outage_the_job_list_is_used_again(serve_app: ServeApp) -> None:
    """List failures while the whole API went down do not set the list aside afterwards."""
    api = FakeAPI(running(30))
    after_outage = 0  # retrieves once the API is back

    async def retrieve(request: web.Request) -> web.StreamResponse:
        nonlocal after_outage
        after_outage += 1  # a job on its own still looks active: only the list tells
        return web.json_response({"id": request.match_info["id"], "status": "cancel_requested"})

    go_down_after_cancels(api, 40, retrieve)
    poll = PollPolicy(interval=0.05, growth=1.0, jitter=0)
    async with serve_app(api.app()) as url, manager(url, poll=poll) as jobs:
        report = await jobs.cancel_many(api.jobs, wait=True, timeout=60)
    assert report.by_status == {"cancelled": 30}
    assert after_outage <= 2 * 30  # at most the looks queued when it came back, not rounds more


async def test_a_list_failing_with_everything_else_is_not_set_aside(serve_app: ServeApp) -> None:
    """Polling alone into an API going down: a job or two fetched to tell, not every due job.

    Every cancel is in when the API goes down, so only the poller's requests see
    it. The list fails three times before the gate has seen enough failures to
    call it an outage; fetching every due job then would only pile onto it.
    """
    api = FakeAPI(running(30))
    go_down_after_cancels(api, 30)
    poll = PollPolicy(interval=0.05, growth=1.0, jitter=0)
    async with serve_app(api.app()) as url, manager(url, poll=poll) as jobs:
        report = await jobs.cancel_many(api.jobs, wait=True, timeout=60)
    assert report.by_status == {"cancelled": 30}
    assert api.counts["retrieve"] < 10  # a probe a round until the outage is called


# -- what the poller must never get wrong ----------------------------------------------


async def test_an_unknown_status_is_not_terminal(serve_app: ServeApp) -> None:
    """A status the library does not know (a newer API's) keeps the job waiting."""
    api = FakeAPI({**running(10), "ft-paused": "paused"})
    async with serve_app(api.app()) as url, manager(url) as jobs:
        report = await jobs.wait_many(list(api.jobs), timeout=0.3)
    result = next(result for result in report if result.job_id == "ft-paused")
    assert isinstance(result.error, WaitTimeoutError)
    assert result.status == "paused"


async def test_ids_missing_from_the_list_are_fetched_each(serve_app: ServeApp) -> None:
    """A job the list leaves out is fetched on its own, while the others still wait."""
    api = FakeAPI({**running(12), "ft-hidden": "completed"})
    listing = api._list

    async def without_hidden(request: web.Request) -> web.StreamResponse:
        del api.jobs["ft-hidden"]
        try:
            return await listing(request)
        finally:
            api.jobs["ft-hidden"] = "completed"

    api.on["list"] = without_hidden
    finished: list[str] = []

    def heard(event: Event) -> None:
        if isinstance(event, JobFinished):
            finished.append(event.result.job_id)

    async with serve_app(api.app()) as url, manager(url, on_event=heard) as jobs:
        task = asyncio.create_task(jobs.wait_many(list(api.jobs), timeout=30))
        await api.until("retrieve", 1)
        while not finished:  # noqa: ASYNC110 - the event comes from the manager's tasks
            await asyncio.sleep(0.002)
        assert finished == ["ft-hidden"]
        api.jobs = dict.fromkeys(api.jobs, "completed")
        report = await task
    assert report.by_status == {"completed": 13}
    assert api.counts["retrieve"] == 1


async def test_a_timeout_says_what_went_wrong_while_watching(serve_app: ServeApp) -> None:
    """The WaitTimeoutError's cause is the last error met while watching the job."""
    api = FakeAPI(running(1))

    async def unavailable(request: web.Request) -> web.StreamResponse:
        return error_response(503, "down for maintenance")

    api.on["retrieve"] = unavailable
    async with serve_app(api.app()) as url, manager(url) as jobs:
        with pytest.raises(WaitTimeoutError) as info:
            await jobs.wait("ft-0", timeout=0.3)
    assert isinstance(info.value.__cause__, InternalServerError)
    assert "never seen" in str(info.value)


async def test_accepted_cancels_are_heard_once_each(serve_app: ServeApp) -> None:
    """CancelAccepted comes once per accepted job, before the job is terminal."""
    api = FakeAPI(running(20))
    heard: list[Event] = []
    async with serve_app(api.app()) as url, manager(url, on_event=heard.append) as jobs:
        await jobs.cancel_many(list(api.jobs), wait=True, timeout=30)
    accepted = [e.job_id for e in heard if isinstance(e, CancelAccepted)]
    assert sorted(accepted) == sorted(api.jobs)
    first_finish = next(i for i, e in enumerate(heard) if isinstance(e, JobFinished))
    first_accept = next(i for i, e in enumerate(heard) if isinstance(e, CancelAccepted))
    assert first_accept < first_finish


async def test_a_refused_cancel_is_reported_with_the_refusal(serve_app: ServeApp) -> None:
    """A 400 for a job still active (not cancelling) is the job's failure, with its record."""
    api = FakeAPI(running(1))

    async def refuse(request: web.Request) -> web.StreamResponse:
        return error_response(400, "cannot cancel now")

    api.on["cancel"] = refuse
    async with serve_app(api.app()) as url, manager(url) as jobs:
        report = await jobs.cancel_many(["ft-0"])
    [result] = report.results
    assert isinstance(result.error, BadRequestError)
    assert result.status == "running"
    assert not result.cancel_sent
    assert not isinstance(result.error, APIConnectionError)


async def test_few_watched_among_many_are_fetched_each(
    serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten jobs watched in an account of 2,000: after one list, a GET each is the cheaper look."""
    caplog.set_level(logging.DEBUG, logger="finetune_ops")
    api = FakeAPI({**running(10), **{f"ft-old-{i}": "completed" for i in range(2_000)}})
    watched = [f"ft-{i}" for i in range(10)]
    async with serve_app(api.app()) as url, manager(url) as jobs:
        task = asyncio.create_task(jobs.wait_many(watched, timeout=30))
        await api.until("retrieve", 30)
        lists = api.counts["list"]
        api.jobs.update(dict.fromkeys(watched, "completed"))
        report = await task
    assert report.by_status == {"completed": 10}
    assert lists == 1  # one list, read as far as 10 GETs would cost; from then on, GETs
    assert "with one GET each (the last list had at least 501 entries)" in caplog.text


async def test_a_first_look_is_timed_from_acceptance(serve_app: ServeApp) -> None:
    """A job accepted later is first looked at later, not in a round that began before it."""
    api = FakeAPI({"ft-early": "running", "ft-late": "running"})
    cancel, retrieve = api._cancel, api._retrieve
    holding = False
    late_seen_while_holding: list[bool] = []

    async def slow_cancel(request: web.Request) -> web.StreamResponse:
        if request.match_info["id"] == "ft-late":
            await asyncio.sleep(0.1)  # accepted a tenth of a second after the other
        return await cancel(request)

    async def watch(request: web.Request) -> web.StreamResponse:
        nonlocal holding
        job_id = request.match_info["id"]
        if job_id == "ft-late" and not late_seen_while_holding:
            late_seen_while_holding.append(holding)
        if job_id == "ft-early" and api.counts["retrieve"] == 1:
            holding = True  # the early job's first look is answered slowly
            await asyncio.sleep(0.3)
            holding = False
        return await retrieve(request)

    api.on["cancel"] = slow_cancel
    api.on["retrieve"] = watch
    poll = PollPolicy(interval=0.3, growth=1.0, jitter=0)
    async with serve_app(api.app()) as url, manager(url, poll=poll) as jobs:
        report = await jobs.cancel_many(["ft-early", "ft-late"], wait=True, timeout=30)
    assert report.by_status == {"cancelled": 2}
    assert late_seen_while_holding == [False]  # not one round with the early job's look
