"""The job list read as it arrives: the same answer whole or in any chunks, with or without a memo.

The reference is what ``json.loads`` of the whole body says, worked out here
apart from the library. Reads in chunks, and second reads that skip entries by
the memo of a first, must agree with it entry for entry, and refuse what it
refuses. Over HTTP, a list trickled in small pieces and a list of many
megabytes are read without holding the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_ops import InvalidResponseError, RetryPolicy
from finetune_ops._api import FineTunesAPI
from finetune_ops._bodies import EmptyBody
from finetune_ops._converter import STRUCTURE_ERRORS, structure_job
from finetune_ops._listing import ChangesScan, JobsScan, ListMemo

ServeApp = Callable[[web.Application], AbstractAsyncContextManager[str]]

Known = Mapping[str, str | None]
#: What a read gives, comparable: (changed ids to record reprs, mentioned ids, size), or an error.
Outcome = tuple[dict[str, str], set[str], int] | type[Exception]

ACTIVE: dict[str, Any] = {
    "id": "ft-1",
    "status": "cancel_requested",
    "created_at": "2026-03-04T05:06:07.891Z",
    "model": "org/model-7b",
    "n_epochs": 2,
    "training_type": {"type": "Full"},
}
LISTS = [
    {"data": []},
    {"object": "list", "data": [ACTIVE, {**ACTIVE, "id": "ft-2", "status": "running"}]},
    {"data": [[1], 3, None, {"id": 5}, {"status": "x"}, {**ACTIVE, "id": "ft-3"}]},
    {"data": [{**ACTIVE, "id": "ft-2", "created_at": 7}], "more": {"id": "ft-1"}},
    {"data": [{**ACTIVE, "id": "ft-2", "training_type": "Lora", "total_price": 1e400}]},
    {"data": [{"id": "ft-1", "status": "running", "events": [{"id": "ft-2"}]}]},
    {"before": [1, {"a": "]"}], "data": [{"id": "ft-2", "status": 5}], "after": "}"},
]
ODD = [
    b'{"data": [{"id": "ft-2", "status": "running", "total_price": 1e400}]}',
    b'{"data": [{"id": "ft-2", "status": "running", "model": "\\ud800 \xc3\xa9"}]}',
    b'{"data": [{"id": "ft-2", "status": "running", "learning_rate": NaN}]}',
    b' \r\n{ "data" :\t[ ] } \n',
]
BAD = [
    b"",
    b"  \n",
    b"[]",
    b"x",
    b'{"data": 1}',
    b'{"other": []}',
    b'{"data": [1,]}',
    b'{"data": []} x',
    b'{"data": [], "data": []}',
    b'{"data": [{"id": "ft-1"}',
    b'{"data": [{"id": "ft-1"}], ',
    b'{"data": [{"id": "ft-1", "status": "x"}] ',
    b'{"data": [{"id": "\xff"}]}',
    b"NaN",
    b'{"data": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
]
KNOWN: Known = {"ft-1": "cancel_requested", "ft-2": None, "ft-3": "running", "ft-9": None}


def reference(body: bytes, known: Known) -> Outcome:
    """What the whole body says of the watched jobs, read at once with ``json``."""
    try:
        text = body.decode("utf-8")
        if not text.strip():
            return EmptyBody
        whole = json.loads(text, object_pairs_hook=_no_twice_data)
    except (ValueError, RecursionError) as error:
        return type(error)
    if type(whole) is not dict or type(whole.get("data")) is not list:
        return ValueError
    changed, mentioned = {}, set()
    for entry in whole["data"]:
        if type(entry) is not dict or type(entry.get("id")) is not str:
            continue
        job_id = entry["id"]
        if job_id not in known:
            continue
        mentioned.add(job_id)
        if entry.get("status") != known[job_id]:
            try:
                changed[job_id] = repr(structure_job(entry))
            except STRUCTURE_ERRORS:
                changed[job_id] = "malformed"
    return changed, mentioned, len(whole["data"])


def _no_twice_data(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if keys.count("data") > 1:
        raise ValueError("two 'data' keys")
    return dict(pairs)


def read(body: bytes, known: Known, cuts: list[int], memo: ListMemo | None = None) -> Outcome:
    """What a scan makes of ``body`` fed in pieces cut at ``cuts``."""
    scan = ChangesScan(known, memo)
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        scan.feed(body[start:cut])
        start = max(start, cut)
    try:
        (changed, mentioned, size), seconds = scan.finish()
    except (ValueError, RecursionError, EmptyBody) as error:
        return _kind(error)
    assert seconds >= 0
    shown = {
        job_id: "malformed" if isinstance(job, InvalidResponseError) else repr(job)
        for job_id, job in changed.items()
    }
    return shown, mentioned, size


def _kind(error: Exception) -> type[Exception]:
    if isinstance(error, UnicodeDecodeError | json.JSONDecodeError | EmptyBody | RecursionError):
        return type(error)
    return ValueError


BODIES = [*(json.dumps(item).encode() for item in LISTS), *ODD, *BAD]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("piece", [1, 2, 7, 64, 10**9])
def test_a_list_reads_the_same_whole_or_in_pieces(body: bytes, piece: int) -> None:
    cuts = list(range(piece, len(body), piece))
    assert read(body, KNOWN, cuts) == reference(body, KNOWN)


@pytest.mark.parametrize("body", BODIES)
def test_a_second_read_with_the_memo_of_the_first_is_the_same(body: bytes) -> None:
    for first in BODIES:
        memo = ListMemo()
        read(first, KNOWN, [], memo)
        assert read(body, KNOWN, [5], memo) == reference(body, KNOWN), first


def test_all_the_jobs_of_a_list_in_pieces() -> None:
    body = json.dumps({"data": [ACTIVE, {**ACTIVE, "id": "ft-2"}]}).encode()
    scan = JobsScan()
    for at in range(len(body)):
        scan.feed(body[at : at + 1])
    assert scan.finish() == [structure_job(ACTIVE), structure_job({**ACTIVE, "id": "ft-2"})]


# -- any list, any pieces, any change between two reads -------------------------------

# Statuses of one length among others, so that an entry can change and keep its length.
STATUSES = ["running", "pending", "queued", "cancelled", "completed", "cancel_requested", 7, None]
IDS = [f"ft-{n}" for n in range(6)]

entries = st.fixed_dictionaries(
    {"id": st.sampled_from([*IDS, 3])},
    optional={
        "status": st.sampled_from(STATUSES),
        "n_epochs": st.integers(0, 10**20),
        "suffix": st.text(max_size=4),
        "events": st.just([{"id": "ft-0", "status": "completed"}]),
    },
)
lists = st.lists(st.one_of(entries, st.integers(), st.none()), max_size=8)


def _body(items: list[Any], indent: int | None) -> bytes:
    return json.dumps({"object": "list", "data": items}, indent=indent).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=lists,
    second=lists,
    known=st.dictionaries(st.sampled_from(IDS), st.sampled_from([*STATUSES[:6], None])),
    indent=st.sampled_from([None, 0, 2]),
    data=st.data(),
)
def test_any_second_read_agrees_with_the_whole_body(
    first: list[Any], second: list[Any], known: dict[str, str | None], indent: int | None, data: Any
) -> None:
    """Entries added, removed, moved or changed (also at the same length) are all seen."""
    memo = ListMemo()
    one, two = _body(first, indent), _body(second, indent)
    assert read(one, known, [], memo) == reference(one, known)
    cuts = data.draw(st.lists(st.integers(0, len(two)), max_size=6))
    assert read(two, known, cuts, memo) == reference(two, known)


def test_a_status_changed_at_the_same_length_is_seen() -> None:
    memo = ListMemo()
    known: Known = {"ft-1": "running"}
    before = _body([{"id": "ft-0", "status": "running"}, {"id": "ft-1", "status": "running"}], 0)
    after = before.replace(b'"running"\n}\n]', b'"pending"\n}\n]')
    assert len(after) == len(before)
    assert read(before, known, [], memo) == ({}, {"ft-1"}, 2)
    changed, mentioned, _ = read(after, known, [], memo)  # type: ignore[misc]
    assert mentioned == {"ft-1"}
    assert list(changed) == ["ft-1"]
    assert "pending" in changed["ft-1"]


def test_a_failed_read_leaves_the_memo_as_it_was() -> None:
    memo = ListMemo()
    whole = _body([{"id": "ft-1", "status": "running"}], None)
    read(whole, KNOWN, [], memo)
    assert read(whole[:-3], KNOWN, [], memo) is json.JSONDecodeError
    assert len(memo) == 1
    assert read(whole, {"ft-1": "queued"}, [], memo)[0] == {  # type: ignore[index]
        "ft-1": repr(structure_job({"id": "ft-1", "status": "running"}))
    }


# -- over HTTP -------------------------------------------------------------------------


def _listing(jobs: int) -> bytes:
    template = {**ACTIVE, "status": "running", "suffix": "x" * 600}
    return _body([{**template, "id": f"ft-{n:06d}"} for n in range(jobs)], None)


def _trickling(body: bytes, piece: int) -> web.Application:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), piece):
            await response.write(body[start : start + piece])
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/fine-tunes", answer)
    return app


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[FineTunesAPI]:
    client = FineTunesAPI(base_url=url, retry=RetryPolicy.no_retry())
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_list_trickled_in_small_pieces_is_read(serve_app: ServeApp) -> None:
    body = _listing(30)
    async with serve_app(_trickling(body, 97)) as url, _client(url) as client:
        known = {"ft-000003": "running", "ft-000007": None, "ft-999999": None}
        (changed, mentioned, size), _ = await client.list_changes(known)
    assert size == 30
    assert mentioned == {"ft-000003", "ft-000007"}
    assert list(changed) == ["ft-000007"]


async def test_a_big_list_is_never_held_whole(serve_app: ServeApp) -> None:
    """A 19 MB list is read holding a small part of it; whole, it would cost twice its size."""
    body = _listing(25_000)
    assert len(body) > 19_000_000
    known = {f"ft-{n:06d}": "running" for n in range(0, 25_000, 5)}
    async with serve_app(_trickling(body, 1 << 16)) as url, _client(url) as client:
        tracemalloc.start()
        try:
            (changed, mentioned, size), _ = await client.list_changes(known)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (size, len(mentioned), changed) == (25_000, 5_000, {})
    assert peak < len(body) / 4, f"peak {peak / 1e6:.1f} MB for a {len(body) / 1e6:.1f} MB list"


async def test_a_list_cut_short_is_an_invalid_response(serve_app: ServeApp) -> None:
    body = _listing(50)

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/fine-tunes", answer)
    async with serve_app(app) as url, _client(url) as client:
        with pytest.raises(InvalidResponseError, match="not valid JSON") as caught:
            await client.list_changes({"ft-000001": None})
    assert caught.value.excerpt.startswith('{"object": "list"')


# -- reading no further than needed ---------------------------------------------------


def test_a_scan_told_how_many_entries_stops_there() -> None:
    body = _body([{"id": f"ft-{n}", "status": "running"} for n in range(10)], 2)
    memo = ListMemo()
    scan = ChangesScan({"ft-1": "queued", "ft-8": "queued"}, memo, most=3)
    for at in range(0, len(body), 5):
        scan.feed(body[at : at + 5])
    assert not scan.wants_more
    (changed, mentioned, size), _ = scan.finish()
    assert (list(changed), mentioned, size) == (["ft-1"], {"ft-1"}, 3)
    assert len(memo) == 0  # a part of a list is not what the next read compares with


def _crowded(jobs: int, watched: list[str], sent: dict[str, bool]) -> web.Application:
    """An account of ``jobs`` finished jobs, then the ``watched`` ones, running."""
    done = {**ACTIVE, "status": "completed", "suffix": "x" * 600}
    items = [{**done, "id": f"ft-old-{n:06d}"} for n in range(jobs)]
    items += [{**ACTIVE, "id": job_id, "status": "running"} for job_id in watched]
    body = _body(items, None)

    async def listing(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), 1 << 16):
            await response.write(body[start : start + (1 << 16)])
        await response.write_eof()
        sent["whole"] = True
        return response

    async def one(request: web.Request) -> web.Response:
        return web.json_response({**ACTIVE, "id": request.match_info["id"], "status": "cancelled"})

    app = web.Application()
    app.router.add_get("/v1/fine-tunes", listing)
    app.router.add_get("/v1/fine-tunes/{id}", one)
    return app


async def test_a_crowded_list_is_read_no_further_than_asked(serve_app: ServeApp) -> None:
    """50 entries asked for among 20,000: the connection is left with the body mostly unread."""
    sent: dict[str, bool] = {}
    async with serve_app(_crowded(20_000, ["ft-a"], sent)) as url, _client(url) as client:
        (changed, mentioned, size), _ = await client.list_changes({"ft-a": None}, most=50)
        again = await client.retrieve("ft-a")  # the pool still works after the cut
    assert (changed, mentioned, size) == ({}, set(), 50)
    assert again.status == "cancelled"
    assert "whole" not in sent


async def test_few_jobs_in_a_crowded_account_are_fetched_each(serve_app: ServeApp) -> None:
    """The first list read stops once it has cost what GETs would; the jobs end by GET."""
    from finetune_ops import JobManager, PollPolicy

    watched = [f"ft-w{n}" for n in range(10)]
    sent: dict[str, bool] = {}
    poll = PollPolicy(interval=0.01, growth=1.0, jitter=0)
    async with (
        serve_app(_crowded(20_000, watched, sent)) as url,
        JobManager(base_url=url, poll=poll) as jobs,
    ):
        report = await jobs.wait_many(watched, timeout=30)
    assert report.by_status == {"cancelled": 10}
    assert "whole" not in sent


async def test_a_list_that_cannot_be_one_is_not_read_to_its_end(serve_app: ServeApp) -> None:
    """Once the body cannot be a list, the rest of it is not read."""
    sent: dict[str, bool] = {}

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"data": 7')
        for _ in range(400):
            await response.write(b" " * (1 << 16))
        await response.write_eof()
        sent["whole"] = True
        return response

    app = web.Application()
    app.router.add_get("/v1/fine-tunes", answer)
    async with serve_app(app) as url, _client(url) as client:
        with pytest.raises(InvalidResponseError, match="'data' is not a list of jobs"):
            await client.list_changes({"ft-1": None})
    assert "whole" not in sent
