"""A failed look is tried again after the retry policy's wait, not a whole poll interval later."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
from aiohttp import web

from finetune_ops import JobManager, PollPolicy, RetryPolicy

# Rounds come at least a quarter interval apart: a retried look a quarter
# interval after its failure, the next scheduled one a whole interval after.
POLL = PollPolicy(interval=1.0, growth=1.0, jitter=0)
QUICK_RETRY = RetryPolicy(wait_initial=0.01, wait_jitter=0)


def _job(job_id: str, status: str) -> dict[str, str]:
    return {"id": job_id, "status": status, "created_at": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    "failure",
    [
        web.json_response({"error": {"message": "busy"}}, status=503),
        web.json_response({"error": {"message": "slow"}}, status=429, headers={"Retry-After": "0"}),
    ],
    ids=["503", "429 with a hint"],
)
async def test_a_failed_look_comes_again_before_the_next_interval(
    serve_app: Callable[[web.Application], AbstractAsyncContextManager[str]],
    failure: web.Response,
) -> None:
    """A job whose look failed is seen again before a job whose look succeeded is looked at next.

    ``ft-steady`` answers "running", then "completed"; ``ft-flaky`` fails its
    first look, then answers "completed". The retried look must reach the
    server before ft-steady's second, scheduled one.
    """
    looks: list[tuple[str, int]] = []
    seen: Counter[str] = Counter()

    async def retrieve(request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        seen[job_id] += 1
        looks.append((job_id, seen[job_id]))
        if job_id == "ft-flaky" and seen[job_id] == 1:
            return failure
        first = seen[job_id] == 1
        return web.json_response(_job(job_id, "running" if first else "completed"))

    app = web.Application()
    app.router.add_get("/v1/fine-tunes/{id}", retrieve)
    async with (
        serve_app(app) as url,
        JobManager(base_url=url, poll=POLL, retry=QUICK_RETRY) as jobs,
    ):
        finished = [
            result.job_id async for result in jobs.wait_iter(["ft-steady", "ft-flaky"], timeout=30)
        ]
    assert finished == ["ft-flaky", "ft-steady"]
    assert looks.index(("ft-flaky", 2)) < looks.index(("ft-steady", 2))
    assert seen == {"ft-flaky": 2, "ft-steady": 2}
