"""The simulated fine-tunes API, driven over real loopback HTTP with a plain aiohttp client."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import os
import re
import signal
import socket
import sys
import tarfile
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import jsonschema
import pytest
from _spec import load_spec
from aiohttp import web
from multidict import CIMultiDictProxy
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from finetune_ops.testing import (
    FaultKind,
    FaultPlan,
    FaultRecord,
    Lifecycle,
    ManualClock,
    RateLimit,
    Simulator,
    Window,
)
from finetune_ops.testing._faults import ENDPOINTS
from finetune_ops.testing._ratelimit import RateLimiter

ROOT = Path(__file__).parents[1]
SPEC_URI = "urn:together-openapi"

JOB_ID = re.compile(r"^ft-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SPEC_STATUSES = (
    "pending",
    "queued",
    "running",
    "compressing",
    "uploading",
    "cancel_requested",
    "cancelled",
    "error",
    "completed",
)
TERMINAL = ("completed", "cancelled", "error", "user_error")
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
EPOCH = datetime(2026, 11, 26, 3, 15, 33, 123000, tzinfo=UTC)
LIFECYCLE = Lifecycle(
    pending=10, queued=20, running=100, compressing=5, uploading=5, cancel_delay=2
)


# -- the spec, as JSON Schema -------------------------------------------------


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects rewritten as JSON Schema 2020-12."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="module")
def registry() -> Registry[Any]:
    """The spec's components, addressable as urn:together-openapi#/components/schemas/X."""
    document = _to_json_schema(load_spec())
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, DRAFT202012.create_resource(document)
    )
    return registry


Validate = Callable[[str, Any], None]


@pytest.fixture(scope="module")
def validate(registry: Registry[Any]) -> Validate:
    """validate("FinetuneResponse", data) raises if data does not match that schema."""
    validators: dict[str, jsonschema.Draft202012Validator] = {}

    def check(name: str, instance: Any) -> None:
        if name not in validators:
            schema = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
            validators[name] = jsonschema.Draft202012Validator(schema, registry=registry)
        validators[name].validate(instance)

    return check


# -- helpers --------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Reply:
    client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout else None
    async with http.request(
        method, url, json=body, headers=headers, timeout=client_timeout
    ) as response:
        data = await response.read()
    return Reply(response.status, response.headers, data)


def assert_error(reply: Reply, status: int, error_type: str, validate: Validate) -> None:
    assert reply.status == status
    payload = reply.json()
    validate("ErrorData", payload)
    assert payload["error"]["type"] == error_type
    assert set(payload["error"]) == {"message", "type", "param", "code"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(epoch=EPOCH)


@pytest.fixture
def sim(clock: ManualClock) -> Simulator:
    return Simulator(clock=clock, lifecycle=LIFECYCLE, seed=1)


@pytest.fixture
async def url(sim: Simulator) -> AsyncIterator[str]:
    async with sim.serve() as base_url:
        yield base_url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


# -- endpoints: happy paths and schema validity ----------------------------------


async def test_serve_yields_loopback_v1_url(sim: Simulator) -> None:
    assert sim.base_url is None
    async with sim.serve() as base_url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
        assert sim.base_url == base_url
    assert sim.base_url is None


async def test_create_returns_a_pending_truncated_job(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    reply = await fetch(
        http,
        "POST",
        f"{url}/fine-tunes",
        body={"model": MODEL, "training_file": "file-abc", "n_epochs": 3},
    )
    assert reply.status == 200
    job = reply.json()
    validate("FinetuneResponseTruncated", job)
    assert JOB_ID.match(job["id"])
    assert job["status"] == "pending"
    assert job["model"] == MODEL
    assert job["training_file"] == "file-abc"
    assert job["n_epochs"] == 3
    assert job.get("events", []) == []
    assert job["created_at"] == job["updated_at"] == "2026-11-26T03:15:33.123Z"
    assert sim.status(job["id"]) == "pending"
    assert sim.job_ids() == [job["id"]]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "model"),
        ({"model": MODEL}, "training_file"),
        ({"training_file": "f"}, "model"),
        ({"model": "", "training_file": "f"}, "model"),
        ({"model": "org/unknown", "training_file": "f"}, "model"),
        ({"model": MODEL, "training_file": "f", "n_epochs": 0}, "n_epochs"),
        ({"model": MODEL, "training_file": "f", "training_type": {"type": "QLoRA"}}, None),
        (["model", "training_file"], None),
    ],
)
async def test_create_rejects_bad_requests(
    sim: Simulator,
    url: str,
    http: aiohttp.ClientSession,
    validate: Validate,
    body: Any,
    param: str | None,
) -> None:
    reply = await fetch(http, "POST", f"{url}/fine-tunes", body=body)
    assert_error(reply, 400, "invalid_request_error", validate)
    if param is not None:
        assert reply.json()["error"]["param"] == param
    assert len(sim) == 0


async def test_create_rejects_a_body_that_is_not_json(
    url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    async with http.post(f"{url}/fine-tunes", data=b"{not json") as response:
        reply = Reply(response.status, response.headers, await response.read())
    assert_error(reply, 400, "invalid_request_error", validate)


async def test_list_returns_every_job_truncated(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    ids = sim.add_jobs(6)
    ids += [sim.add_job(status) for status in (*SPEC_STATUSES, "user_error")]
    reply = await fetch(http, "GET", f"{url}/fine-tunes")
    assert reply.status == 200
    listing = reply.json()
    validate("FinetuneTruncatedList", listing)
    assert [job["id"] for job in listing["data"]] == ids
    assert [job["status"] for job in listing["data"][:6]] == ["pending", "queued", "running"] * 2
    for job in listing["data"]:
        assert not job.get("events")
        assert TIMESTAMP.match(job["created_at"])
        assert TIMESTAMP.match(job["updated_at"])


async def test_list_of_no_jobs(url: str, http: aiohttp.ClientSession, validate: Validate) -> None:
    reply = await fetch(http, "GET", f"{url}/fine-tunes")
    assert reply.json() == {"data": []}
    validate("FinetuneTruncatedList", reply.json())


@pytest.mark.parametrize("status", [*SPEC_STATUSES, "user_error"])
async def test_retrieve_returns_the_full_job(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate, status: str
) -> None:
    job_id = sim.add_job(status)
    reply = await fetch(http, "GET", f"{url}/fine-tunes/{job_id}")
    assert reply.status == 200
    job = reply.json()
    validate("FinetuneResponse", job)
    assert job["id"] == job["job_id"] == job_id
    assert job["status"] == status
    for key in (
        "model",
        "training_file",
        "n_epochs",
        "n_checkpoints",
        "n_evals",
        "batch_size",
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "max_grad_norm",
        "weight_decay",
        "training_type",
        "training_method",
        "created_at",
        "updated_at",
        "events",
        "token_count",
        "param_count",
        "total_price",
        "epochs_completed",
        "queue_depth",
        "progress",
    ):
        assert key in job, key
    assert job["events"], "a job has at least its creation event"
    for event in job["events"]:
        validate("FineTuneEvent", event)
    assert job == sim.job(job_id)


async def test_events_endpoint(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    job_id = sim.add_job("completed")
    reply = await fetch(http, "GET", f"{url}/fine-tunes/{job_id}/events")
    assert reply.status == 200
    events = reply.json()
    validate("FinetuneListEvents", events)
    kinds = [event["type"] for event in events["data"]]
    assert kinds[0] == "job_pending"
    assert kinds[-1] == "job_complete"
    assert {"job_start", "training_start", "epoch_complete", "model_uploading"} <= set(kinds)
    assert events["data"][-1]["model_path"]
    assert all(event["object"] == "fine-tune-event" for event in events["data"])
    assert events["data"] == sim.events(job_id)


async def test_unknown_status_is_kept_and_never_moves(
    sim: Simulator, clock: ManualClock, url: str, http: aiohttp.ClientSession
) -> None:
    job_id = sim.add_job("paused")
    clock.advance(10**6)
    reply = await fetch(http, "GET", f"{url}/fine-tunes/{job_id}")
    assert reply.json()["status"] == "paused"
    listing = await fetch(http, "GET", f"{url}/fine-tunes")
    assert listing.json()["data"][0]["status"] == "paused"


def test_jobs_vary_and_repeat_with_the_seed() -> None:
    first = Simulator(clock=ManualClock(), seed=5)
    second = Simulator(clock=ManualClock(), seed=5)
    other = Simulator(clock=ManualClock(), seed=6)
    ids = first.add_jobs(40)
    assert second.add_jobs(40) == ids
    assert not set(other.add_jobs(40)) & set(ids)
    assert [first.job(job_id) for job_id in ids] == [second.job(job_id) for job_id in ids]
    jobs = [first.job(job_id) for job_id in ids]
    assert {job["training_type"]["type"] for job in jobs} == {"Lora", "Full"}
    assert {job["training_method"]["method"] for job in jobs} == {"sft", "dpo"}
    assert len({job["model"] for job in jobs}) > 1
    assert all(JOB_ID.match(job_id) for job_id in ids)
    assert len(set(ids)) == len(ids)


def test_add_job_fields_and_validation() -> None:
    sim = Simulator(clock=ManualClock())
    job_id = sim.add_job("queued", model="org/m", training_file="file-1", n_epochs=7, suffix="s")
    job = sim.job(job_id)
    assert (job["model"], job["training_file"], job["n_epochs"], job["suffix"]) == (
        "org/m",
        "file-1",
        7,
        "s",
    )
    job["status"] = "changed"  # a copy: the simulator is not affected
    assert sim.status(job_id) == "queued"
    with pytest.raises(ValueError, match="state"):
        sim.add_job("queued", events=[])
    with pytest.raises(ValueError, match="status"):
        sim.add_job("")
    with pytest.raises(KeyError):
        sim.job("ft-missing")


# -- lifecycle --------------------------------------------------------------------


async def test_lifecycle_follows_the_manual_clock(
    sim: Simulator, clock: ManualClock, url: str, http: aiohttp.ClientSession
) -> None:
    created = await fetch(
        http, "POST", f"{url}/fine-tunes", body={"model": MODEL, "training_file": "f"}
    )
    job_id = created.json()["id"]
    seen = []
    for step in (9.5, 1, 20, 99, 1, 5, 5):
        clock.advance(step)
        reply = await fetch(http, "GET", f"{url}/fine-tunes/{job_id}")
        seen.append(reply.json()["status"])
    assert seen == [
        "pending",
        "queued",
        "running",
        "running",
        "compressing",
        "uploading",
        "completed",
    ]
    job = sim.job(job_id)
    # Transitions carry the time they were due, not the time they were noticed.
    assert job["started_at"] == "2026-11-26T03:16:03.123Z"  # 10 + 20 s after creation
    assert job["updated_at"] == "2026-11-26T03:17:53.123Z"  # 140 s after creation
    assert job["epochs_completed"] == job["n_epochs"]
    assert job["progress"] == {"estimate_available": True, "seconds_remaining": 0}
    kinds = [event["type"] for event in job["events"]]
    assert kinds[:4] == ["job_pending", "job_pending", "job_start", "training_start"]
    assert kinds[-2:] == ["model_upload_complete", "job_complete"]
    assert kinds.count("epoch_complete") == job["n_epochs"]
    stamps = [event["created_at"] for event in job["events"]]
    assert stamps == sorted(stamps)


def test_a_big_clock_jump_gives_the_same_history(clock: ManualClock) -> None:
    stepped = Simulator(clock=clock, lifecycle=LIFECYCLE, seed=2)
    jumped_clock = ManualClock(epoch=EPOCH)
    jumped = Simulator(clock=jumped_clock, lifecycle=LIFECYCLE, seed=2)
    a, b = stepped.add_job("pending"), jumped.add_job("pending")
    for _ in range(300):
        clock.advance(0.5)
        stepped.status(a)
    jumped_clock.advance(150)
    assert stepped.job(a) == jumped.job(b)


def test_progress_counts_down(sim: Simulator, clock: ManualClock) -> None:
    job_id = sim.add_job("running")
    assert sim.job(job_id)["progress"] == {"estimate_available": True, "seconds_remaining": 110}
    clock.advance(50)
    job = sim.job(job_id)
    assert job["progress"] == {"estimate_available": True, "seconds_remaining": 60}
    assert 0 <= job["epochs_completed"] <= job["n_epochs"]
    assert sim.job(sim.add_job("queued"))["progress"]["estimate_available"] is False


async def test_cancel_goes_through_cancel_requested(
    sim: Simulator,
    clock: ManualClock,
    url: str,
    http: aiohttp.ClientSession,
    validate: Validate,
) -> None:
    job_id = sim.add_job("running")
    reply = await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")
    assert reply.status == 200
    validate("FinetuneResponseTruncated", reply.json())
    assert reply.json()["status"] == "cancel_requested"
    clock.advance(1.5)
    again = await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")
    assert again.status == 200
    assert again.json()["status"] == "cancel_requested"
    clock.advance(0.5)  # cancel_delay (2 s) after the first cancel
    assert sim.status(job_id) == "cancelled"
    job = (await fetch(http, "GET", f"{url}/fine-tunes/{job_id}")).json()
    assert job["status"] == "cancelled"
    assert job["updated_at"] == "2026-11-26T03:15:35.123Z"
    kinds = [event["type"] for event in job["events"]]
    assert kinds[-2:] == ["cancel_requested", "job_stopped"]
    late = await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")
    assert_error(late, 400, "invalid_request_error", validate)


async def test_cancel_with_no_delay_is_immediate(http: aiohttp.ClientSession) -> None:
    sim = Simulator(clock=ManualClock(), lifecycle=Lifecycle(cancel_delay=0))
    job_id = sim.add_job("pending")
    async with sim.serve() as base_url:
        reply = await fetch(http, "POST", f"{base_url}/fine-tunes/{job_id}/cancel")
    assert reply.json()["status"] == "cancelled"


@pytest.mark.parametrize("status", TERMINAL)
async def test_cancelling_a_finished_job_is_a_bad_request(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate, status: str
) -> None:
    job_id = sim.add_job(status)
    reply = await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")
    assert_error(reply, 400, "invalid_request_error", validate)
    assert sim.status(job_id) == status


def test_set_status(sim: Simulator, clock: ManualClock) -> None:
    job_id = sim.add_job("running")
    sim.set_status(job_id, "error")
    clock.advance(10**5)
    assert sim.status(job_id) == "error"
    assert sim.events(job_id)[-1]["type"] == "job_error"


def test_preloaded_active_jobs_stay_active_by_default() -> None:
    clock = ManualClock()
    sim = Simulator(clock=clock)
    ids = sim.add_jobs(3)
    clock.advance(30)
    assert [sim.status(job_id) for job_id in ids] == ["pending", "queued", "running"]


# -- errors and headers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("POST", "/cancel"), ("GET", "/events")]
)
async def test_unknown_id_is_not_found(
    url: str, http: aiohttp.ClientSession, validate: Validate, method: str, suffix: str
) -> None:
    reply = await fetch(
        http, method, f"{url}/fine-tunes/ft-00000000-0000-4000-8000-000000000000{suffix}"
    )
    assert_error(reply, 404, "not_found_error", validate)


async def test_unknown_route_is_a_json_404(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    reply = await fetch(http, "GET", f"{url}/files")
    assert_error(reply, 404, "not_found_error", validate)
    assert "x-request-id" in reply.headers
    assert sim.total_requests == 0


async def test_api_key_is_required_when_configured(
    http: aiohttp.ClientSession, validate: Validate
) -> None:
    sim = Simulator(api_key="sk-sim-secret", clock=ManualClock())
    job_id = sim.add_job()
    async with sim.serve() as base_url:
        missing = await fetch(http, "GET", f"{base_url}/fine-tunes")
        wrong = await fetch(
            http, "GET", f"{base_url}/fine-tunes", headers={"Authorization": "Bearer sk-other"}
        )
        right = await fetch(
            http,
            "POST",
            f"{base_url}/fine-tunes/{job_id}/cancel",
            headers={"Authorization": "Bearer sk-sim-secret"},
        )
    assert_error(missing, 401, "authentication_error", validate)
    assert_error(wrong, 401, "authentication_error", validate)
    assert b"sk-" not in wrong.body
    assert right.status == 200
    assert "sk-sim-secret" not in repr(sim)
    assert sim.counters["list"] == 2


async def test_any_key_or_none_without_api_key(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    plain = await fetch(http, "GET", f"{url}/fine-tunes")
    keyed = await fetch(http, "GET", f"{url}/fine-tunes", headers={"Authorization": "Bearer x"})
    assert plain.status == keyed.status == 200


async def test_every_response_has_a_unique_request_id(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    job_id = sim.add_job()
    sim.inject(FaultKind.RATE_LIMIT_SECONDS, endpoint="list")
    sim.inject(FaultKind.HTML_PAGE, endpoint="retrieve")
    replies = [
        await fetch(http, "GET", f"{url}/fine-tunes"),
        await fetch(http, "GET", f"{url}/fine-tunes"),
        await fetch(http, "GET", f"{url}/fine-tunes/{job_id}"),
        await fetch(http, "GET", f"{url}/fine-tunes/{job_id}"),
        await fetch(http, "GET", f"{url}/fine-tunes/nope"),
        await fetch(http, "POST", f"{url}/fine-tunes", body={}),
        await fetch(http, "DELETE", f"{url}/fine-tunes"),
    ]
    assert [reply.status for reply in replies] == [429, 200, 502, 200, 404, 400, 405]
    request_ids = [reply.headers["x-request-id"] for reply in replies]
    assert all(request_ids)
    assert len(set(request_ids)) == len(request_ids)


# -- faults -------------------------------------------------------------------------


RATE_LIMITS = (
    FaultKind.RATE_LIMIT_SECONDS,
    FaultKind.RATE_LIMIT_DATE,
    FaultKind.RATE_LIMIT_MS,
    FaultKind.RATE_LIMIT_NO_HINT,
)
JSON_5XX = {
    FaultKind.SERVER_ERROR_500: 500,
    FaultKind.BAD_GATEWAY_502: 502,
    FaultKind.UNAVAILABLE_503: 503,
    FaultKind.GATEWAY_TIMEOUT_504: 504,
}
OTHER_KINDS = (
    FaultKind.LATENCY,
    FaultKind.RESET,
    FaultKind.TRUNCATED_JSON,
    FaultKind.HTML_PAGE,
    FaultKind.EMPTY_BODY,
    FaultKind.HANG,
)


def test_every_fault_kind_has_a_test() -> None:
    assert {*RATE_LIMITS, *JSON_5XX, *OTHER_KINDS} == set(FaultKind)


@pytest.mark.parametrize("kind", RATE_LIMITS)
async def test_rate_limit_hints(
    http: aiohttp.ClientSession, validate: Validate, kind: FaultKind
) -> None:
    sim = Simulator(clock=ManualClock(), faults=FaultPlan(retry_after=1.25))
    job_id = sim.add_job("running")
    async with sim.serve() as base_url:
        sim.inject(kind)
        reply = await fetch(http, "POST", f"{base_url}/fine-tunes/{job_id}/cancel")
    assert_error(reply, 429, "rate_limit_error", validate)
    assert sim.status(job_id) == "running", "a 429 happens before the cancel"
    retry_after = reply.headers.get("Retry-After")
    retry_after_ms = reply.headers.get("retry-after-ms")
    if kind is FaultKind.RATE_LIMIT_SECONDS:
        assert retry_after == "1.25"
        assert retry_after_ms is None
    elif kind is FaultKind.RATE_LIMIT_DATE:
        assert retry_after is not None
        assert retry_after.endswith(" GMT")
        hinted = parsedate_to_datetime(retry_after)
        sent = parsedate_to_datetime(reply.headers["Date"])
        assert hinted.tzinfo is not None
        # Rounded up to whole seconds, so never before the response's own date + 1.25 s.
        assert 2 <= (hinted - sent).total_seconds() <= 3
        assert retry_after_ms is None
    elif kind is FaultKind.RATE_LIMIT_MS:
        assert retry_after is None
        assert retry_after_ms == "1250"
    else:
        assert retry_after is None
        assert retry_after_ms is None


async def test_fractional_retry_after_default(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    sim.inject(FaultKind.RATE_LIMIT_SECONDS)
    reply = await fetch(http, "GET", f"{url}/fine-tunes")
    assert reply.headers["Retry-After"] == "0.05"


@pytest.mark.parametrize(("kind", "status"), JSON_5XX.items())
async def test_server_errors_have_json_bodies_and_no_effect(
    sim: Simulator,
    url: str,
    http: aiohttp.ClientSession,
    validate: Validate,
    kind: FaultKind,
    status: int,
) -> None:
    job_id = sim.add_job("running")
    sim.inject(kind, endpoint="cancel")
    reply = await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")
    assert_error(reply, status, "server_error", validate)
    assert sim.status(job_id) == "running"
    assert sim.fault_log == [FaultRecord("cancel", kind, job_id)]


async def test_html_page(sim: Simulator, url: str, http: aiohttp.ClientSession) -> None:
    sim.inject(FaultKind.HTML_PAGE)
    reply = await fetch(
        http, "POST", f"{url}/fine-tunes", body={"model": MODEL, "training_file": "f"}
    )
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.body.lstrip().lower().startswith(b"<!doctype html>")
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    assert len(sim) == 0, "the job was not created"


async def test_empty_body(sim: Simulator, url: str, http: aiohttp.ClientSession) -> None:
    sim.inject(FaultKind.EMPTY_BODY)
    reply = await fetch(http, "GET", f"{url}/fine-tunes")
    assert reply.status == 503
    assert reply.body == b""
    assert reply.headers["Content-Length"] == "0"


async def test_latency_then_a_normal_answer(http: aiohttp.ClientSession) -> None:
    sim = Simulator(clock=ManualClock(), faults=FaultPlan(spike=0.01, latency=0.001))
    job_id = sim.add_job()
    async with sim.serve() as base_url:
        sim.inject(FaultKind.LATENCY)
        reply = await fetch(http, "POST", f"{base_url}/fine-tunes/{job_id}/cancel")
    assert reply.status == 200
    assert reply.json()["status"] == "cancel_requested"
    assert sim.fault_log == [FaultRecord("cancel", FaultKind.LATENCY, job_id)]


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/cancel"), ("GET", "")])
async def test_reset_after_the_effect(
    sim: Simulator, url: str, http: aiohttp.ClientSession, method: str, suffix: str
) -> None:
    job_id = sim.add_job("running")
    sim.inject(FaultKind.RESET)
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
        await fetch(http, method, f"{url}/fine-tunes/{job_id}{suffix}")
    expected = "cancel_requested" if suffix else "running"
    assert sim.status(job_id) == expected, "the request took effect before the reset"
    # The server is fine afterwards, on a new connection.
    assert (await fetch(http, "GET", f"{url}/fine-tunes/{job_id}")).status == 200
    assert sim.total_requests == 2


async def test_truncated_json_after_the_effect(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    sim.inject(FaultKind.TRUNCATED_JSON, endpoint="create")
    reply = await fetch(
        http, "POST", f"{url}/fine-tunes", body={"model": MODEL, "training_file": "f"}
    )
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert int(reply.headers["Content-Length"]) == len(reply.body) > 0
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    assert len(sim) == 1, "the job was created even though its answer was lost"


async def test_hang_until_the_client_gives_up(sim: Simulator, http: aiohttp.ClientSession) -> None:
    job_id = sim.add_job("running")
    async with sim.serve() as base_url:
        sim.inject(FaultKind.HANG, endpoint="cancel")
        with pytest.raises(TimeoutError):
            await fetch(http, "POST", f"{base_url}/fine-tunes/{job_id}/cancel", timeout=0.2)
        assert sim.status(job_id) == "running"
        ok = await fetch(http, "POST", f"{base_url}/fine-tunes/{job_id}/cancel")
        assert ok.status == 200


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/cancel"), ("GET", "")])
async def test_hanging_request_is_released_when_serving_ends(
    sim: Simulator, http: aiohttp.ClientSession, method: str, suffix: str
) -> None:
    job_id = sim.add_job("running")
    async with sim.serve() as base_url:
        sim.inject(FaultKind.HANG, times=2)
        pending = asyncio.create_task(
            fetch(http, method, f"{base_url}/fine-tunes/{job_id}{suffix}")
        )
        async with asyncio.timeout(10):
            # Polling is the only way to see that the server holds the request.
            while sim.total_requests == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    # The connection is dropped unanswered; aiohttp's retry of a GET finds the port closed.
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending
    assert sim.status(job_id) == "running"


async def test_scripted_faults_by_endpoint(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    job_id = sim.add_job("running")
    sim.inject(FaultKind.UNAVAILABLE_503, endpoint="cancel", times=2)
    sim.inject(FaultKind.SERVER_ERROR_500)
    statuses = [
        (await fetch(http, "GET", f"{url}/fine-tunes")).status,  # the any-endpoint 500
        (await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")).status,
        (await fetch(http, "GET", f"{url}/fine-tunes")).status,
        (await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")).status,
        (await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")).status,
    ]
    assert statuses == [500, 503, 200, 503, 200]
    assert sim.fault_log == [
        FaultRecord("list", FaultKind.SERVER_ERROR_500, None),
        FaultRecord("cancel", FaultKind.UNAVAILABLE_503, job_id),
        FaultRecord("cancel", FaultKind.UNAVAILABLE_503, job_id),
    ]
    sim.inject(FaultKind.EMPTY_BODY)
    sim.clear_faults()
    assert (await fetch(http, "GET", f"{url}/fine-tunes")).status == 200


async def _run_plan(plan: FaultPlan, http: aiohttp.ClientSession) -> list[object]:
    sim = Simulator(clock=ManualClock(), faults=plan)
    ids = sim.add_jobs(3)
    outcomes: list[object] = []
    async with sim.serve() as base_url:
        for index in range(40):
            method, suffix = ("POST", "/cancel") if index % 4 == 0 else ("GET", "")
            try:
                reply = await fetch(http, method, f"{base_url}/fine-tunes/{ids[index % 3]}{suffix}")
            except aiohttp.ClientError as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append(reply.status)
    assert sim.total_requests == 40
    return [*outcomes, *sim.fault_log]


async def test_seeded_plan_repeats(http: aiohttp.ClientSession) -> None:
    plan = FaultPlan(rate=0.5, seed=11, retry_after=0.01, spike=0.0)
    first = await _run_plan(plan, http)
    assert first == await _run_plan(plan, http)
    assert first != await _run_plan(attrs.evolve(plan, seed=12), http)
    faults = [item for item in first if isinstance(item, FaultRecord)]
    assert 5 <= len(faults) <= 35
    assert FaultKind.HANG not in {record.kind for record in faults}


async def test_plan_rate_and_endpoints(http: aiohttp.ClientSession) -> None:
    sim = Simulator(
        clock=ManualClock(),
        faults=FaultPlan(rate=1.0, kinds=[FaultKind.BAD_GATEWAY_502], endpoints={"cancel"}),
    )
    job_id = sim.add_job()
    async with sim.serve() as base_url:
        listed = await fetch(http, "GET", f"{base_url}/fine-tunes")
        cancelled = await fetch(http, "POST", f"{base_url}/fine-tunes/{job_id}/cancel")
        sim.faults = FaultPlan(rate=0.0)
        calm = await fetch(http, "POST", f"{base_url}/fine-tunes/{job_id}/cancel")
    assert (listed.status, cancelled.status, calm.status) == (200, 502, 200)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=1.5)
    with pytest.raises(ValueError, match="kinds"):
        FaultPlan(kinds=())
    with pytest.raises(ValueError, match="endpoints"):
        FaultPlan(endpoints={"purge"})
    with pytest.raises(ValueError, match="retry_after"):
        FaultPlan(retry_after=-1)
    with pytest.raises(ValueError, match="running"):
        Lifecycle(running=-1)
    with pytest.raises(ValueError, match="advance"):
        ManualClock().advance(-1)
    sim = Simulator()
    with pytest.raises(ValueError, match="endpoint"):
        sim.inject(FaultKind.RESET, endpoint="purge")
    with pytest.raises(ValueError, match="times"):
        sim.inject(FaultKind.RESET, times=0)
    with pytest.raises(TypeError, match="ManualClock"):
        sim.advance(1)
    assert FaultPlan(kinds=["reset"]).kinds == (FaultKind.RESET,)


# -- inspection ----------------------------------------------------------------------


async def test_counters(sim: Simulator, url: str, http: aiohttp.ClientSession) -> None:
    job_id = sim.add_job()
    sim.inject(FaultKind.SERVER_ERROR_500, endpoint="cancel")
    await fetch(http, "POST", f"{url}/fine-tunes", body={"model": MODEL, "training_file": "f"})
    await fetch(http, "POST", f"{url}/fine-tunes", body={})
    await fetch(http, "GET", f"{url}/fine-tunes")
    for _ in range(3):
        await fetch(http, "GET", f"{url}/fine-tunes/{job_id}")
    await fetch(http, "GET", f"{url}/fine-tunes/nope")
    await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")
    await fetch(http, "POST", f"{url}/fine-tunes/{job_id}/cancel")
    await fetch(http, "GET", f"{url}/fine-tunes/{job_id}/events")
    await fetch(http, "GET", f"{url}/models")
    counted = {"create": 2, "list": 1, "retrieve": 4, "cancel": 2, "events": 1}
    assert dict(sim.counters) == {**dict.fromkeys(ENDPOINTS, 0), **counted}
    assert sim.total_requests == 10
    sim.reset_counters()
    assert sim.total_requests == 0
    assert dict(sim.counters) == dict.fromkeys(ENDPOINTS, 0)
    assert len(sim.fault_log) == 1


def test_timestamps_come_from_the_clock_epoch() -> None:
    clock = ManualClock(epoch=EPOCH)
    sim = Simulator(clock=clock, lifecycle=LIFECYCLE)
    job_id = sim.add_job("pending")
    clock.advance(10.25)
    job = sim.job(job_id)
    assert job["created_at"] == "2026-11-26T03:15:33.123Z"
    assert job["updated_at"] == "2026-11-26T03:15:43.123Z"  # queued when due, at 10 s
    assert clock.wall() == datetime(2026, 11, 26, 3, 15, 43, 373000, tzinfo=UTC)


def test_many_jobs(sim: Simulator) -> None:
    ids = sim.add_jobs(20_000)
    assert len(sim) == len(set(ids)) == 20_000
    assert sim.status(ids[-1]) == "queued"


# -- the pytest plugin and the command line -------------------------------------------


async def test_plugin_fixture(finetune_simulator: Simulator, http: aiohttp.ClientSession) -> None:
    assert finetune_simulator.base_url is not None
    job_id = finetune_simulator.add_job("cancel_requested")
    reply = await fetch(http, "GET", f"{finetune_simulator.base_url}/fine-tunes/{job_id}")
    assert reply.json()["status"] == "cancel_requested"
    finetune_simulator.advance(60)
    assert finetune_simulator.status(job_id) == "cancelled"


def test_plugin_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makeconftest(
        """
        import pytest
        pytest_plugins = ["finetune_ops.testing.pytest_plugin"]

        @pytest.fixture
        def finetune_simulator_options():
            return {"api_key": "sk-user-test"}
        """
    )
    pytester.makepyfile(
        """
        import aiohttp

        async def test_it(finetune_simulator):
            job_id = finetune_simulator.add_job("running")
            url = f"{finetune_simulator.base_url}/fine-tunes/{job_id}/cancel"
            async with aiohttp.ClientSession() as http:
                async with http.post(url) as refused:
                    assert refused.status == 401
                headers = {"Authorization": "Bearer sk-user-test"}
                async with http.post(url, headers=headers) as accepted:
                    assert (await accepted.json())["status"] == "cancel_requested"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


async def test_command_line_serves_until_interrupted(http: aiohttp.ClientSession) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "finetune_ops.testing",
        "--port",
        "0",
        "--jobs",
        "5",
        "--api-key",
        "sk-cli-secret",
        "--seed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not printed or not printed[-1].startswith("export TOGETHER_BASE_URL="):
                line = await process.stdout.readline()
                assert line, "the server exited before printing its URL"
                printed.append(line.decode())
        base_url = printed[-1].split("=", 1)[1].strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
        assert base_url in printed[0]
        reply = await fetch(
            http, "GET", f"{base_url}/fine-tunes", headers={"Authorization": "Bearer sk-cli-secret"}
        )
        assert [job["status"] for job in reply.json()["data"]] == [
            "pending",
            "queued",
            "running",
            "pending",
            "queued",
        ]
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest, errors = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 0, errors.decode()
    assert b"sk-cli-secret" not in "".join(printed).encode() + rest + errors


async def test_app_runs_under_a_users_own_server(http: aiohttp.ClientSession) -> None:
    sim = Simulator(clock=ManualClock())
    job_id = sim.add_job("queued")
    runner = web.AppRunner(sim.app, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        reply = await fetch(http, "GET", f"http://127.0.0.1:{port}/v1/fine-tunes/{job_id}")
    finally:
        await runner.cleanup()
    assert reply.json()["status"] == "queued"
    assert sim.counters["retrieve"] == 1


def test_package_is_self_contained() -> None:
    """Only aiohttp, attrs and the standard library; pytest only in the plugin."""
    package = ROOT / "finetune_ops" / "testing"
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
                assert node.level <= 1, f"{path.name} imports from outside the package"
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if path.name != "_no_wait.py":  # the library's policy, loaded only on demand
                    assert top != "finetune_ops", f"{path.name} imports {name}"
                if path.name != "pytest_plugin.py":
                    assert top not in ("pytest", "pytest_asyncio"), f"{path.name} imports {name}"


def test_rate_limiter_windows() -> None:
    """A window admits its budget, refuses the rest with the wait until it resets, then refills."""
    now = [10.0]
    limiter = RateLimiter(RateLimit(requests=2, per=1.0), clock=lambda: now[0])
    assert limiter.admit() is None
    assert limiter.admit() is None
    now[0] = 10.25
    assert limiter.admit() == pytest.approx(0.75)
    now[0] = 11.5
    assert limiter.admit() is None
    assert limiter.refused == 1


async def test_rate_limit_answers_429_with_hint() -> None:
    """Over the budget the simulator answers 429 with Retry-After in fractional seconds."""
    sim = Simulator(rate_limit=RateLimit(requests=1, per=60))
    async with sim.serve() as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/fine-tunes") as first:
            assert first.status == 200
        async with session.get(f"{url}/fine-tunes") as second:
            assert second.status == 429
            assert 0 < float(second.headers["Retry-After"]) <= 60
            assert (await second.json())["error"]["type"] == "rate_limit_error"
    assert sim.rate_limited == 1
    assert sim.counters["list"] == 2


# -- create: the request's settings, the spec's defaults -------------------------------


async def test_create_echoes_the_requests_settings(
    url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """What a create sends comes back; batch_size "max" is the model's largest batch."""
    body = {
        "model": MODEL,
        "training_file": "file-1",
        "packing": False,
        "max_seq_length": 1024,
        "random_seed": 7,
        "lr_scheduler": {"lr_scheduler_type": "linear", "lr_scheduler_args": {"min_lr_ratio": 0.1}},
        "batch_size": "max",
        "training_type": {"type": "Full"},
        "training_method": {"method": "dpo", "dpo_beta": 0.3},
        "suffix": "mine",
    }
    job = (await fetch(http, "POST", f"{url}/fine-tunes", body=body)).json()
    validate("FinetuneResponseTruncated", job)
    limits = (await fetch(http, "GET", f"{url}/fine-tunes/models/limits?model_name={MODEL}")).json()
    assert (job["packing"], job["max_seq_length"], job["random_seed"]) == (False, 1024, 7)
    assert job["lr_scheduler"] == {
        "lr_scheduler_type": "linear",
        "lr_scheduler_args": {"min_lr_ratio": 0.1},
    }
    assert job["batch_size"] == limits["full_training"]["max_batch_size_dpo"]
    assert job["training_type"] == {"type": "Full"}
    assert job["training_method"]["dpo_beta"] == 0.3
    assert job["suffix"] == "mine"


async def test_create_fills_the_specs_defaults(
    url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """A create that names only model and file gets the documented defaults."""
    body = {"model": MODEL, "training_file": "file-1"}
    job = (await fetch(http, "POST", f"{url}/fine-tunes", body=body)).json()
    full = (await fetch(http, "GET", f"{url}/fine-tunes/{job['id']}")).json()
    validate("FinetuneResponse", full)
    limits = (await fetch(http, "GET", f"{url}/fine-tunes/models/limits?model_name={MODEL}")).json()
    expected = {"packing": True, "n_epochs": 1, "n_checkpoints": 1, "n_evals": 0}
    expected |= {"learning_rate": 1e-5, "warmup_ratio": 0.0, "max_grad_norm": 1.0}
    expected |= {"weight_decay": 0.0, "random_seed": None}
    assert {key: job[key] for key in expected} == expected
    assert job["training_type"]["type"] == "Lora"
    assert job["training_type"]["lora_r"] == limits["lora_training"]["default_rank"]
    assert job["training_method"] == {"method": "sft", "train_on_inputs": "auto"}
    assert job["batch_size"] == limits["lora_training"]["max_batch_size"]
    assert job["max_seq_length"] == limits["max_seq_length_sft"]
    assert "suffix" not in job
    assert full["train_on_inputs"] == "auto"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"batch_size": 10_000}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_seq_length": 1_000_000}, "max_seq_length"),
        ({"packing": "yes"}, "packing"),
        ({"random_seed": 1.5}, "random_seed"),
        ({"lr_scheduler": {"lr_scheduler_type": "step"}}, "lr_scheduler"),
        ({"training_type": {"type": "Lora", "lora_r": 4096}}, "lora_r"),
        ({"n_evals": 2}, "validation_file"),
        ({"model": "google/gemma-2-9b-it", "training_type": {"type": "Full"}}, "training_type"),
    ],
)
async def test_create_checks_settings_against_the_model(
    sim: Simulator,
    url: str,
    http: aiohttp.ClientSession,
    validate: Validate,
    extra: dict[str, Any],
    param: str,
) -> None:
    """Settings of the wrong type or beyond the model's limits get a 400 naming them."""
    body = {"model": MODEL, "training_file": "file-1", **extra}
    reply = await fetch(http, "POST", f"{url}/fine-tunes", body=body)
    assert_error(reply, 400, "invalid_request_error", validate)
    assert reply.json()["error"]["param"] == param
    assert len(sim) == 0


async def test_unsupported_model_is_refused(
    url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """A model the service does not fine-tune is a 400 with its own code."""
    body = {"model": "org/unknown", "training_file": "file-1"}
    reply = await fetch(http, "POST", f"{url}/fine-tunes", body=body)
    assert_error(reply, 400, "invalid_request_error", validate)
    assert reply.json()["error"]["code"] == "model_not_supported"


async def test_total_price_is_in_nanodollars(url: str, http: aiohttp.ClientSession) -> None:
    """total_price is tokens x epochs x the model's dollar rate, in units of 1e-9 dollars."""
    body = {"model": MODEL, "training_file": "file-1", "n_epochs": 2}
    job = (await fetch(http, "POST", f"{url}/fine-tunes", body=body)).json()
    dollars = job["token_count"] * 2 / 1_000_000 * 0.48
    assert job["total_price"] == pytest.approx(dollars * 1e9, abs=1)
    assert isinstance(job["total_price"], int)


# -- the other operations of the spec ---------------------------------------------------


async def test_api_words_are_never_job_ids(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """estimate-price and models are routes: a wrong method is a 405, not a job lookup."""
    wrong_method = await fetch(http, "GET", f"{url}/fine-tunes/estimate-price")
    assert_error(wrong_method, 405, "invalid_request_error", validate)
    assert wrong_method.headers["Allow"] == "POST"
    for path in ("models", "models/other", "ft-1/nope", "ft-1/cancel/again"):
        reply = await fetch(http, "GET", f"{url}/fine-tunes/{path}")
        assert_error(reply, 404, "not_found_error", validate)
        assert reply.json()["error"]["code"] != "job_not_found"
    deleted = await fetch(http, "DELETE", f"{url}/fine-tunes/models/limits")
    assert deleted.status == 405
    assert sim.counters["retrieve"] == sim.counters["delete"] == 0


async def test_model_catalogue_answers_in_the_specs_shapes(
    url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """models/supported lists names; models/limits gives limits, or a 404 message."""
    supported = (await fetch(http, "GET", f"{url}/fine-tunes/models/supported")).json()
    assert MODEL in supported["models"]
    for name in supported["models"]:
        limits = await fetch(http, "GET", f"{url}/fine-tunes/models/limits?model_name={name}")
        validate("FineTuneModelLimits", limits.json())
        assert limits.json()["model_name"] == name
    unknown = await fetch(http, "GET", f"{url}/fine-tunes/models/limits?model_name=x/y")
    assert unknown.status == 404
    assert set(unknown.json()) == {"message"}


async def test_estimate_price_repeats_for_the_same_file(
    url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """The same training file gets the same estimate; more epochs cost more."""
    body = {"training_file": "file-1", "model": MODEL}
    first = (await fetch(http, "POST", f"{url}/fine-tunes/estimate-price", body=body)).json()
    again = (await fetch(http, "POST", f"{url}/fine-tunes/estimate-price", body=body)).json()
    more = await fetch(
        http, "POST", f"{url}/fine-tunes/estimate-price", body={**body, "n_epochs": 3}
    )
    assert first == again
    assert first["estimation_available"] is True
    assert more.json()["estimated_total_price"] > first["estimated_total_price"]
    missing = await fetch(http, "POST", f"{url}/fine-tunes/estimate-price", body={})
    assert_error(missing, 400, "invalid_request_error", validate)


async def test_delete_forgets_finished_jobs_and_refuses_active_ones(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """A finished job is deleted (then 404); an active one is refused and stays."""
    done, active = sim.add_job("cancelled"), sim.add_job("running")
    deleted = await fetch(http, "DELETE", f"{url}/fine-tunes/{done}")
    assert deleted.status == 200
    validate("FinetuneDeleteResponse", deleted.json())
    assert done in deleted.json()["message"]
    assert done not in sim.job_ids()
    gone = await fetch(http, "GET", f"{url}/fine-tunes/{done}")
    assert_error(gone, 404, "not_found_error", validate)
    again = await fetch(http, "DELETE", f"{url}/fine-tunes/{done}")
    assert_error(again, 404, "not_found_error", validate)
    refused = await fetch(http, "DELETE", f"{url}/fine-tunes/{active}")
    assert_error(refused, 400, "invalid_request_error", validate)
    assert refused.json()["error"]["code"] == "job_not_deletable"
    assert sim.status(active) == "running"
    assert sim.counters["delete"] == 3


async def test_checkpoints_appear_as_training_goes(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """n_checkpoints are saved evenly through training; the last is the final model."""
    job_id = sim.add_job("running", n_checkpoints=4)
    seen = []
    for _ in range(4):
        reply = await fetch(http, "GET", f"{url}/fine-tunes/{job_id}/checkpoints")
        validate("FinetuneListCheckpoints", reply.json())
        seen.append([entry["checkpoint_type"] for entry in reply.json()["data"]])
        sim.advance(LIFECYCLE.running / 2)
    assert [len(types) for types in seen] == [0, 2, 3, 4]
    assert seen[-1][-1] == "Final"
    assert all(kind.startswith("Intermediate") for kind in seen[-1][:-1])
    final = (await fetch(http, "GET", f"{url}/fine-tunes/{job_id}/checkpoints")).json()["data"]
    steps = [entry["step"] for entry in final]
    assert steps == sorted(steps)
    assert final[-1]["path"] == sim.job(job_id)["model_output_path"]


async def test_metrics_cover_the_steps_trained_and_filter(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    """Metrics grow with training; global_step_from/to filter them, as query or JSON body."""
    job_id = sim.add_job("completed")
    every = (await fetch(http, "GET", f"{url}/fine-tunes/{job_id}/metrics")).json()["metrics"]
    steps = [point["train/global_step"] for point in every]
    assert steps
    assert steps == sorted(steps)
    assert {"train/loss", "train/learning_rate"} <= set(every[0])
    middle = steps[len(steps) // 2]
    query = f"{url}/fine-tunes/{job_id}/metrics?global_step_to={int(middle)}"
    by_query = (await fetch(http, "GET", query)).json()["metrics"]
    by_body = await fetch(
        http, "GET", f"{url}/fine-tunes/{job_id}/metrics", body={"global_step_from": int(middle)}
    )
    assert by_query[-1]["train/global_step"] == middle
    assert by_body.json()["metrics"][0]["train/global_step"] == middle
    pending = sim.add_job("pending")
    assert (await fetch(http, "GET", f"{url}/fine-tunes/{pending}/metrics")).json() == {
        "metrics": []
    }
    bad = await fetch(http, "GET", f"{query}x")
    assert bad.status == 400


async def test_download_sends_a_small_archive(
    sim: Simulator, url: str, http: aiohttp.ClientSession, validate: Validate
) -> None:
    """A finished job's model is a tar.gz naming it; a Range asks for its size only."""
    job_id = sim.add_job("completed", n_checkpoints=2)
    query = f"{url}/finetune/download?ft_id={job_id}&checkpoint=merged"
    reply = await fetch(http, "GET", query)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/octet-stream"
    with tarfile.open(fileobj=io.BytesIO(reply.body), mode="r:gz") as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
    assert manifest["job_id"] == job_id
    assert manifest["checkpoint"] == "merged"
    assert (await fetch(http, "GET", query)).body == reply.body
    head = await fetch(http, "GET", query, headers={"Range": "bytes=0-1"})
    assert head.status == 206
    assert head.headers["Content-Range"] == f"bytes 0-1/{len(reply.body)}"
    checkpoints = (await fetch(http, "GET", f"{url}/fine-tunes/{job_id}/checkpoints")).json()
    first_step = checkpoints["data"][0]["step"]
    by_step = await fetch(
        http, "GET", f"{url}/finetune/download?ft_id={job_id}&checkpoint_step={first_step}"
    )
    assert by_step.status == 200
    running = sim.add_job("running")
    base = f"{url}/finetune/download"
    for target, status in (
        (f"{base}?ft_id={running}", 400),
        (f"{base}?ft_id=ft-missing", 404),
        (f"{base}?ft_id={job_id}&checkpoint=weights", 400),
        (f"{base}?ft_id={job_id}&checkpoint_step=999999", 404),
        (base, 400),
    ):
        answer = await fetch(http, "GET", target)
        assert_error(
            answer,
            status,
            "invalid_request_error" if status == 400 else "not_found_error",
            validate,
        )
    assert sim.counters["download"] == 9


async def test_whoami_names_the_callers_project(http: aiohttp.ClientSession) -> None:
    """GET /v3/whoami (asked first by the newer SDK's CLI) describes the key's project."""
    sim = Simulator(api_keys={"key-a": "team-a", "key-b": "team-b"})
    async with sim.serve() as base_url:
        root = base_url.removesuffix("/v1")
        reply = await fetch(
            http, "GET", f"{root}/v3/whoami", headers={"Authorization": "Bearer key-b"}
        )
        refused = await fetch(http, "GET", f"{root}/v3/whoami")
    assert reply.json()["type"] == "project_api_key"
    assert reply.json()["project"]["name"] == "team-b"
    assert refused.status == 401
    assert sim.counters["whoami"] == 2


async def test_faults_strike_the_new_operations(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    """A scripted 500 on delete leaves the job in place; counters name every operation."""
    job_id = sim.add_job("completed")
    sim.inject(FaultKind.SERVER_ERROR_500, endpoint="delete")
    failed = await fetch(http, "DELETE", f"{url}/fine-tunes/{job_id}")
    assert failed.status == 500
    assert job_id in sim.job_ids()
    sim.inject(FaultKind.RATE_LIMIT_SECONDS, endpoint="model_limits")
    limited = await fetch(http, "GET", f"{url}/fine-tunes/models/limits?model_name={MODEL}")
    assert limited.status == 429
    assert sim.fault_log == [
        FaultRecord("delete", FaultKind.SERVER_ERROR_500, job_id),
        FaultRecord("model_limits", FaultKind.RATE_LIMIT_SECONDS, None),
    ]
    assert set(ENDPOINTS) == set(sim.counters)


# -- seeded ids and owners --------------------------------------------------------------


async def test_add_job_takes_a_chosen_id(
    sim: Simulator, url: str, http: aiohttp.ClientSession
) -> None:
    """A job can have the id a test chooses; a taken or unsafe id is refused."""
    assert sim.add_job("queued", id="ft-mine") == "ft-mine"
    reply = await fetch(http, "GET", f"{url}/fine-tunes/ft-mine")
    assert reply.json()["status"] == "queued"
    with pytest.raises(ValueError, match="already exists"):
        sim.add_job(id="ft-mine")
    for bad in ("", "ft-a/b", "ft-a?b", "ft a"):
        with pytest.raises(ValueError, match="id"):
            sim.add_job(id=bad)


async def test_each_key_sees_only_its_projects_jobs(
    http: aiohttp.ClientSession, validate: Validate
) -> None:
    """Another project's job answers 404 like an unknown id, on every job operation."""
    sim = Simulator(api_keys={"key-a": "team-a", "key-b": "team-b"}, clock=ManualClock())
    mine = sim.add_job("running")  # the first key's project by default
    theirs = sim.add_job("completed", owner="key-b")
    also_theirs = sim.add_job("running", owner="team-b")
    as_a = {"Authorization": "Bearer key-a"}
    as_b = {"Authorization": "Bearer key-b"}
    async with sim.serve() as url:
        listed = await fetch(http, "GET", f"{url}/fine-tunes", headers=as_a)
        assert [job["id"] for job in listed.json()["data"]] == [mine]
        for method, path in (
            ("GET", theirs),
            ("DELETE", theirs),
            ("POST", f"{also_theirs}/cancel"),
            ("GET", f"{theirs}/events"),
            ("GET", f"{theirs}/checkpoints"),
            ("GET", f"{theirs}/metrics"),
        ):
            reply = await fetch(http, method, f"{url}/fine-tunes/{path}", headers=as_a)
            assert_error(reply, 404, "not_found_error", validate)
        download = await fetch(http, "GET", f"{url}/finetune/download?ft_id={theirs}", headers=as_a)
        assert download.status == 404
        body = {"model": MODEL, "training_file": "file-1"}
        created = (await fetch(http, "POST", f"{url}/fine-tunes", body=body, headers=as_b)).json()
        listed_b = await fetch(http, "GET", f"{url}/fine-tunes", headers=as_b)
        assert [job["id"] for job in listed_b.json()["data"]] == [
            theirs,
            also_theirs,
            created["id"],
        ]
    assert sim.status(also_theirs) == "running"
    assert theirs in sim.job_ids()


def test_owners_need_keys() -> None:
    """An owner must be a key or a project of api_keys; keys are checked."""
    with pytest.raises(ValueError, match="api_keys"):
        Simulator().add_job(owner="team-a")
    with pytest.raises(ValueError, match="neither"):
        Simulator(api_keys={"key-a": "team-a"}).add_job(owner="team-z")
    with pytest.raises(ValueError, match="not both"):
        Simulator(api_key="k", api_keys={"key-a": "team-a"})
    with pytest.raises(ValueError, match="api_keys"):
        Simulator(api_keys={})
    with pytest.raises(ValueError, match="project"):
        Simulator(api_keys={"key-a": ""})


# -- the rate limiter -------------------------------------------------------------------


class FakeTime:
    """A clock for the limiter that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _limiter(**options: Any) -> tuple[RateLimiter, FakeTime]:
    clock = FakeTime()
    return RateLimiter(RateLimit(clock=clock, **options)), clock


def test_fixed_window_headers_count_down_and_reset() -> None:
    """A fixed window's headers say the budget, what is left and when it refills."""
    limiter, clock = _limiter(requests=3, per=2.0)
    assert limiter.headers() == {
        "x-ratelimit-limit": "3",
        "x-ratelimit-remaining": "3",
        "x-ratelimit-reset": "2",
    }
    for _ in range(3):
        assert limiter.decide().admitted
    clock.now = 0.5
    refused = limiter.decide()
    assert (refused.admitted, refused.wait) == (False, 1.5)
    assert limiter.headers()["x-ratelimit-remaining"] == "0"
    assert limiter.headers()["x-ratelimit-reset"] == "1.5"
    clock.now = 2.0
    assert limiter.decide().admitted
    assert limiter.headers()["x-ratelimit-remaining"] == "2"


def test_sliding_window_admits_as_old_requests_age_out() -> None:
    """A sliding window never lets more than the budget through in any `per` seconds."""
    limiter, clock = _limiter(requests=2, per=1.0, window="sliding")
    assert limiter.decide().admitted
    clock.now = 0.6
    assert limiter.decide().admitted
    clock.now = 0.9
    refused = limiter.decide()
    assert not refused.admitted
    assert refused.wait == pytest.approx(0.1)
    clock.now = 1.0
    assert limiter.decide().admitted  # the first one left the window
    assert not limiter.decide().admitted  # the one at 0.6 has not
    clock.now = 1.6
    assert limiter.decide().admitted


def test_token_bucket_refills_smoothly_and_bursts_after_quiet() -> None:
    """A bucket refills at budget/per; after a quiet spell a whole budget may burst."""
    limiter, clock = _limiter(requests=4, per=1.0, window=Window.TOKEN_BUCKET)
    assert all(limiter.decide().admitted for _ in range(4))
    refused = limiter.decide()
    assert refused.wait == pytest.approx(0.25)
    clock.now = 0.25
    assert limiter.decide().admitted
    assert not limiter.decide().admitted
    clock.now = 10.0
    assert sum(limiter.decide().admitted for _ in range(10)) == 4
    assert limiter.refused == 8


def test_schedule_changes_the_budget_over_time() -> None:
    """From each scheduled time on the budget is the scheduled one; 0 refuses everything."""
    limiter, clock = _limiter(requests=4, per=1.0, schedule=[(10, 2), (20, 0), (30, 4)])
    assert sum(limiter.decide().admitted for _ in range(6)) == 4
    clock.now = 10.0
    assert sum(limiter.decide().admitted for _ in range(6)) == 2
    assert limiter.headers()["x-ratelimit-limit"] == "2"
    clock.now = 25.0
    outage = limiter.decide()
    assert not outage.admitted
    assert outage.wait == 5.0  # until the budget comes back
    assert limiter.headers()["x-ratelimit-reset"] == "5"
    clock.now = 30.0
    assert sum(limiter.decide().admitted for _ in range(6)) == 4


def test_capacity_short_answers_a_seeded_share_within_budget() -> None:
    """capacity_short turns that share of admitted requests into 503s, the same per seed."""

    def run() -> list[bool]:
        limiter, _ = _limiter(requests=1000, capacity_short=0.25, seed=3)
        return [limiter.decide().short_of_capacity for _ in range(400)]

    shorts = run()
    assert shorts == run()
    assert 60 < sum(shorts) < 140


def test_rate_limit_is_checked() -> None:
    """Bad windows, schedules and shares are refused when the limit is made."""
    with pytest.raises(ValueError, match="Window"):
        RateLimit(requests=1, window="leaky")
    with pytest.raises(ValueError, match="increasing"):
        RateLimit(requests=1, schedule=[(5, 1), (2, 1)])
    with pytest.raises(ValueError, match="budgets"):
        RateLimit(requests=1, schedule=[(0, -1)])
    with pytest.raises(ValueError, match="capacity_short"):
        RateLimit(requests=1, capacity_short=1.0)


async def test_every_answer_carries_rate_limit_headers(http: aiohttp.ClientSession) -> None:
    """With a limit, 200s, 404s, 429s and 503s all say how much budget is left."""
    clock = ManualClock()
    limit = RateLimit(requests=3, per=60, capacity_short=0.5, seed=1, clock=clock.now)
    sim = Simulator(clock=clock, rate_limit=limit)
    async with sim.serve() as url:
        replies = [await fetch(http, "GET", f"{url}/fine-tunes/ft-none") for _ in range(4)]
    statuses = [reply.status for reply in replies]
    assert statuses[-1] == 429
    assert set(statuses[:3]) <= {404, 503}
    assert 503 in statuses
    remaining = [reply.headers["x-ratelimit-remaining"] for reply in replies]
    assert remaining == ["2", "1", "0", "0"]
    assert all(reply.headers["x-ratelimit-limit"] == "3" for reply in replies)
    assert all(float(reply.headers["x-ratelimit-reset"]) == 60 for reply in replies)
    assert sim.rate_limited == 1


async def test_no_limit_no_headers(url: str, http: aiohttp.ClientSession) -> None:
    """Without a configured limit no x-ratelimit headers are sent."""
    reply = await fetch(http, "GET", f"{url}/fine-tunes")
    assert not any(name.lower().startswith("x-ratelimit") for name in reply.headers)


# -- the command line's options, and serving to synchronous clients ------------------------


def test_command_line_options_build_the_simulator() -> None:
    """--job, --api-key KEY=PROJECT and the rate options shape the served simulator."""
    from finetune_ops.testing.__main__ import _parser, _simulator

    parser = _parser("prog", {})
    argv = "--job ft-a:completed --job ft-b --api-key k1=team-1 --api-key k2 --jobs 2"
    argv += " --rate-limit 10 --rate-counting sliding --rate-schedule 0:10,5:0"
    args = parser.parse_args([*argv.split(), "--capacity-short", "0.1"])
    sim = _simulator(args)
    assert sim.job_ids()[:2] == ["ft-a", "ft-b"]
    assert (sim.status("ft-a"), sim.status("ft-b")) == ("completed", "running")
    assert len(sim) == 4
    limiter = sim._limiter
    assert limiter is not None
    assert limiter.limit.window is Window.SLIDING
    assert limiter.limit.schedule == ((0.0, 10), (5.0, 0))
    assert parser.parse_args([]).port == 0
    assert _parser("prog", {"port": 8080}).parse_args([]).port == 8080
    with pytest.raises(ValueError, match="need --rate-limit"):
        _simulator(parser.parse_args(["--capacity-short", "0.2"]))
    with pytest.raises(ValueError, match="T:N"):
        _simulator(parser.parse_args(["--rate-limit", "1", "--rate-schedule", "5"]))


def test_printed_lines_name_each_clients_base_url() -> None:
    """The /v1 root for finetune-ops and SDK 1.x first; the bare root for SDK 3.x."""
    from finetune_ops.testing.__main__ import client_lines

    lines = client_lines("http://127.0.0.1:9/v1", keyed=False)
    assert lines[0] == "export TOGETHER_BASE_URL=http://127.0.0.1:9/v1"
    assert "#   export TOGETHER_BASE_URL=http://127.0.0.1:9" in lines
    assert any("TOGETHER_API_KEY" in line for line in lines)
    assert not any("TOGETHER_API_KEY" in line for line in client_lines("http://h/v1", keyed=True))


def test_serve_in_thread_answers_a_blocking_client() -> None:
    """serve_in_thread() serves from its own loop, so a synchronous client can call it."""
    sim = Simulator(clock=ManualClock())
    job_id = sim.add_job("running", id="ft-sync")
    with sim.serve_in_thread() as base_url:
        with urllib.request.urlopen(f"{base_url}/fine-tunes/{job_id}", timeout=30) as answer:
            assert json.loads(answer.read())["status"] == "running"
        sim.advance(10_000)
        with urllib.request.urlopen(f"{base_url}/fine-tunes/{job_id}", timeout=30) as answer:
            assert json.loads(answer.read())["status"] == "completed"
    assert sim.base_url is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="did not start"), sim.serve_in_thread(port=port):
            pass


def test_no_wait_retry_keeps_attempts_and_drops_waits() -> None:
    """NO_WAIT_RETRY retries as often as the default policy, without waiting."""
    from finetune_ops import DEFAULT_RETRY
    from finetune_ops.testing import NO_WAIT_RETRY

    assert (NO_WAIT_RETRY.wait_initial, NO_WAIT_RETRY.wait_max, NO_WAIT_RETRY.wait_jitter) == (
        0,
        0,
        0,
    )
    assert NO_WAIT_RETRY.attempts == DEFAULT_RETRY.attempts
