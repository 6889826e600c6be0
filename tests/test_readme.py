"""The README's examples are real code: they compile, and the runnable ones run."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from finetune_ops.testing import Lifecycle, Simulator

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _block(marker: str) -> str:
    [block] = [b for b in BLOCKS if marker in b]
    return block


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_examples_compile(block: str) -> None:
    """Every python block is valid Python (checked inside a coroutine, as fragments run there)."""
    compile("async def _example():\n" + textwrap.indent(block, "    "), "README.md", "exec")


async def test_simulator_example_runs() -> None:
    """The simulator example passes as written."""
    namespace: dict[str, Any] = {}
    exec(_block("test_cancel_everything"), namespace)
    await namespace["test_cancel_everything"]()


async def test_batch_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch example's main() works against the simulator through the environment."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0.01))
    ids = sim.add_jobs(5)
    source = _block("async def main").replace('asyncio.run(main(["ft-...", "ft-..."]))', "")
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    async with sim.serve() as url:
        monkeypatch.setenv("TOGETHER_BASE_URL", url)
        await namespace["main"](ids)
    assert all(sim.status(job_id) == "cancelled" for job_id in ids)


async def test_orchestration_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The orchestration example returns a whole report."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0.01))
    ids = sim.add_jobs(3)
    namespace: dict[str, Any] = {}
    exec(_block("async def stop_sweep").replace("interval=5", "interval=0.01"), namespace)
    async with sim.serve() as url:
        monkeypatch.setenv("TOGETHER_BASE_URL", url)
        report = await namespace["stop_sweep"](ids)
    assert report.by_status == {"cancelled": 3}


async def test_service_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service example answers over HTTP, mapping our errors to its own statuses."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0.01))
    job_id = sim.add_job("running")
    namespace: dict[str, Any] = {"__name__": "readme_service"}
    exec(_block("async def lifespan"), namespace)
    async with sim.serve() as url:
        monkeypatch.setenv("TOGETHER_BASE_URL", url)
        runner = web.AppRunner(namespace["app"])
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
                async with client.post(f"/jobs/{job_id}/cancel") as response:
                    assert response.status == 200
                    assert await response.json() == {"id": job_id, "status": "cancel_requested"}
                async with client.post("/jobs/ft-unknown/cancel") as response:
                    assert response.status == 404
                async with client.post("/jobs/bad-id/cancel") as response:
                    assert response.status == 400
        finally:
            await runner.cleanup()
