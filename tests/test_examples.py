"""Every Python example of the README and the docs, and every script in examples/, runs.

A ```python block is run as written, as the ``__main__`` module of a thread of
its own (so ``asyncio.run`` starts a loop of its own), with
``TOGETHER_BASE_URL`` pointing at a served simulator and the ids of three of
its running jobs in ``sys.argv[1:]``. An HTML comment on the line before a
block says when it is something else:

- ``<!-- example: pytest -->``: a test module, run by pytest with the
  simulator's plugin, the way a user's own suite would run it;
- ``<!-- example: service -->``: an aiohttp app, imported and then served and
  called over HTTP.

A ```{.python} block that includes a file (``--8<-- "examples/NAME.py"``)
shows one of the scripts in examples/, which are run as programs, in
subprocesses, below.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import pytest_asyncio
from aiohttp import web

from finetune_ops.testing import Lifecycle, Simulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(
    r"(?:<!-- example: (?P<kind>\w+) -->\n)?```python\n(?P<code>.*?)^```", re.M | re.S
)
_INCLUDE = re.compile(r'^```\{\.python\}\n--8<-- "(?P<path>[^"]+)"\n```', re.M)
KINDS = {"script", "pytest", "service"}


@attrs.frozen
class Block:
    """One ```python block of a page, and how it runs."""

    page: Path
    line: int
    kind: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            blocks.append(Block(page, line, match["kind"] or "script", match["code"]))
    return blocks


RUN = _blocks()
INCLUDES = [
    (page, match["path"]) for page in PAGES for match in _INCLUDE.finditer(page.read_text())
]


def _env(base_url: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOGETHER_")}
    env["TOGETHER_API_KEY"] = "sk-example"
    if base_url is not None:
        env["TOGETHER_BASE_URL"] = base_url
    return env


async def _run(*args: str, cwd: Path, env: dict[str, str], timeout: float = 90) -> tuple[int, str]:
    """Run a Python subprocess; its exit status and what it printed (stdout, then stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


@attrs.frozen
class Served:
    sim: Simulator
    base_url: str
    ids: list[str]


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    """A simulator with three running jobs whose cancels land at once."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0))
    ids = sim.add_jobs(3, statuses=("running",))
    async with sim.serve() as base_url:
        yield Served(sim, base_url, ids)


def test_the_pages_have_examples() -> None:
    """The collector finds the blocks, and each has a kind this runner knows."""
    assert len(RUN) >= 15
    assert {block.kind for block in RUN} <= KINDS, [block.name for block in RUN]
    assert {block.page.name for block in RUN} >= {"README.md", "batches.md", "testing.md"}


@pytest.mark.parametrize(("page", "path"), INCLUDES, ids=[path for _, path in INCLUDES])
def test_included_files_are_example_scripts(page: Path, path: str) -> None:
    """A block that includes a file shows a script of examples/, which is run below."""
    assert (ROOT / path).parent == EXAMPLES, page
    assert (ROOT / path).is_file(), page


SCRIPTS = [block for block in RUN if block.kind == "script"]
TESTS = [block for block in RUN if block.kind == "pytest"]
SERVICES = [block for block in RUN if block.kind == "service"]


@pytest.mark.parametrize("block", SCRIPTS, ids=[block.name for block in SCRIPTS])
async def test_script_runs(
    block: Block,
    served: Served,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The block runs to its end as a script, printing what it says it prints."""
    monkeypatch.setenv("TOGETHER_BASE_URL", served.base_url)
    monkeypatch.setenv("TOGETHER_API_KEY", "sk-example")
    monkeypatch.setattr(sys, "argv", ["example.py", *served.ids])
    code = compile(block.code, block.name, "exec")
    await asyncio.to_thread(exec, code, {"__name__": "__main__"})
    assert capsys.readouterr().out, f"{block.name} printed nothing"


@pytest.mark.parametrize("block", TESTS, ids=[block.name for block in TESTS])
def test_test_module_passes(block: Block, pytester: pytest.Pytester) -> None:
    """The block passes as a test module of a project with warnings as errors."""
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_example=block.code)
    result = pytester.runpytest_inprocess("-p", "finetune_ops.testing.pytest_plugin")
    result.assert_outcomes(passed=block.code.count("\nasync def test_"))


@pytest.mark.parametrize("block", SERVICES, ids=[block.name for block in SERVICES])
async def test_service_answers(
    block: Block, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block's app serves, mapping the library's errors to its own statuses."""
    monkeypatch.setenv("TOGETHER_BASE_URL", served.base_url)
    await _check_service(block, served.ids[0])


async def _check_service(block: Block, job_id: str) -> None:
    """Import the service's app, serve it, and call it as its clients would."""
    namespace: dict[str, Any] = {"__name__": "example_service"}
    exec(compile(block.code, block.name, "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, web.Application)
    runner = web.AppRunner(app)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await _call_service(f"http://127.0.0.1:{runner.addresses[0][1]}", job_id)
    finally:
        await runner.cleanup()


async def _call_service(url: str, job_id: str) -> None:
    async with aiohttp.ClientSession(url) as client:
        async with client.post(f"/jobs/{job_id}/cancel") as response:
            assert response.status == 200
            assert await response.json() == {"id": job_id, "status": "cancelled"}
        async with client.post("/jobs/ft-unknown/cancel") as response:
            assert response.status == 404
        async with client.post("/jobs/bad-id/cancel") as response:
            assert response.status == 400


# -- examples/: complete programs ---------------------------------------------------


async def test_batch_cancel_reports_every_job(served: Served, tmp_path: Path) -> None:
    """examples/batch_cancel.py cancels the ids it is given and exits 1 for the unknown one."""
    script = str(EXAMPLES / "batch_cancel.py")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(served.ids[1:]) + "\n\n")
    args = [script, served.ids[0], "ft-unknown", "--from-file", str(ids_file)]
    status, output = await _run(*args, cwd=tmp_path, env=_env(served.base_url))
    assert status == 1, output
    assert "4 jobs: {'cancelled': 3}" in output
    assert "1 failed: {'NotFoundError': 1}" in output
    assert all(served.sim.status(job_id) == "cancelled" for job_id in served.ids)


async def test_deadline_task_ends_with_a_whole_report(served: Served, tmp_path: Path) -> None:
    """examples/deadline_task.py stops the sweep and reports each job."""
    script = str(EXAMPLES / "deadline_task.py")
    status, output = await _run(script, *served.ids, cwd=tmp_path, env=_env(served.base_url))
    assert status == 0, output
    assert "3 jobs: {'cancelled': 3}" in output


async def test_deadline_task_aborted_from_outside(tmp_path: Path) -> None:
    """examples/deadline_task.py --simulate --abort-after: the task ends cancelled, cleanly."""
    script = str(EXAMPLES / "deadline_task.py")
    args = [script, "--simulate", "--abort-after", "0.2"]
    status, output = await _run("-W", "error", *args, cwd=tmp_path, env=_env())
    assert status == 1, output
    assert "The task was cancelled" in output
    assert "Traceback" not in output


async def test_service_serves_simulated_jobs(tmp_path: Path) -> None:
    """examples/service.py --simulate answers over HTTP and shuts down cleanly on Ctrl-C."""
    with socket.socket() as probe:  # a free port for the service to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(EXAMPLES / "service.py"),
        "--port",
        str(port),
        "--simulate",
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        lines: list[str] = []
        while not lines or "Running on" not in lines[-1]:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, f"the service stopped: {lines} {await process.stderr.read()!r}"
            lines.append(line.decode())
        [job_id, *_] = [line.strip() for line in lines if line.strip().startswith("ft-")]
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            async with client.post(f"/jobs/{job_id}/cancel") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "cancel_requested"
            async with client.get(f"/jobs/{job_id}") as response:
                assert (await response.json())["id"] == job_id
            async with client.get("/jobs/ft-unknown") as response:
                assert response.status == 404
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        assert b"Traceback" not in err
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
