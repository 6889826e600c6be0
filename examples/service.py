"""An aiohttp service that cancels and shows jobs for its callers, over one shared session.

    python examples/service.py --port 8000             # the API in TOGETHER_BASE_URL
    python examples/service.py --port 8000 --simulate  # 5 simulated running jobs
    curl -X POST http://127.0.0.1:8000/jobs/ft-.../cancel
    curl http://127.0.0.1:8000/jobs/ft-...

The service's own ClientSession is handed to the JobManager, which uses its
connection pool and leaves it open; Ctrl-C shuts both down in order.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

import finetune_ops as fo

from _simulated import simulated_jobs

HTTP = web.AppKey("http", aiohttp.ClientSession)
JOBS = web.AppKey("jobs", fo.JobManager)
BASE_URL = web.AppKey("base_url", str)


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    """One session and one manager for the life of the service."""
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        manager = fo.JobManager(base_url=app.get(BASE_URL), session=session, max_concurrency=16)
        async with manager as jobs:
            app[JOBS] = jobs
            yield  # the manager closes first and leaves the shared session open


def job_response(job: fo.FineTuneJob) -> web.Response:
    return web.json_response({"id": job.id, "status": job.status})


async def cancel_job(request: web.Request) -> web.Response:
    """POST /jobs/{id}/cancel: ask for the cancel; the job's record as the API returned it."""
    try:
        job = await request.app[JOBS].cancel(request.match_info["id"])
    except fo.InvalidJobIdError as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    except fo.NotFoundError:
        raise web.HTTPNotFound() from None
    return job_response(job)


async def show_job(request: web.Request) -> web.Response:
    """GET /jobs/{id}: the job's current record."""
    try:
        job = await request.app[JOBS].retrieve(request.match_info["id"])
    except fo.InvalidJobIdError as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    except fo.NotFoundError:
        raise web.HTTPNotFound() from None
    return job_response(job)


def make_app(*, simulate: bool = False) -> web.Application:
    app = web.Application()
    if simulate:
        app.cleanup_ctx.append(simulated_api)  # starts before the manager, stops after it
    app.cleanup_ctx.append(lifespan)
    app.router.add_post("/jobs/{id}/cancel", cancel_job)
    app.router.add_get("/jobs/{id}", show_job)
    return app


async def simulated_api(app: web.Application) -> AsyncIterator[None]:
    async with simulated_jobs(5) as (base_url, ids):
        app[BASE_URL] = base_url
        print("Simulated running jobs:", *ids, sep="\n  ", flush=True)
        yield


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--simulate", action="store_true", help="run against a simulated API")
    args = parser.parse_args()
    web.run_app(make_app(simulate=args.simulate), host=args.host, port=args.port)
