"""The command line's journal, signals and closed stdout, driven as real processes.

The simulator runs in this test's loop; `finetune-ops` runs in a child process,
which is signalled, has its stdout closed, or is limited in file size, and is
then resumed with the same journal. What the simulator counted tells whether
any cancel was sent twice.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import PATIENCE, child_env, invoke, json_lines

from finetune_ops import BatchState
from finetune_ops.testing import FaultKind, FaultPlan, Lifecycle, Simulator

#: Starts the command as `python -m finetune_ops` does, with Python's own Ctrl-C handling
#: restored (a shell that started the tests in the background hands down "ignore SIGINT").
BOOTSTRAP = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('finetune_ops', run_name='__main__', alter_sys=True)"
)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A served simulator whose cancels land at once."""
    simulator = Simulator(lifecycle=Lifecycle(cancel_delay=0))
    async with simulator.serve():
        yield simulator


async def spawn(
    args: Sequence[str | Path],
    base_url: str,
    *,
    preexec_fn: Callable[[], None] | None = None,
) -> asyncio.subprocess.Process:
    """Start `finetune-ops ARGS` in a child process against ``base_url``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BOOTSTRAP,
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=child_env(base_url),
        preexec_fn=preexec_fn,
    )


def facts(journal: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The journal's header and its fact lines; fails if any complete line is not JSON."""
    text = journal.read_text()
    assert text.endswith("\n")
    header, *lines = (json.loads(line) for line in text.splitlines())
    return header, lines


def accepted(journal: Path) -> set[str]:
    """The ids the journal records an accepted cancel for."""
    if not journal.exists() or not journal.read_text().endswith("\n"):
        return set()
    return {fact["id"] for fact in facts(journal)[1] if fact.get("cancel_accepted") is True}


async def until(condition: Callable[[], bool]) -> None:
    """Wait (within PATIENCE) until ``condition`` holds."""
    async with asyncio.timeout(PATIENCE):
        while not condition():  # noqa: ASYNC110 (a file and a counter, not an event)
            await asyncio.sleep(0.02)


# -- signals mid-batch, then resume ------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)],
)
async def test_signal_mid_batch_then_resume_sends_no_cancel_twice(
    tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    """A signal while cancels are half sent: exit 128+N, then a resume cancels only the rest."""
    # Slow answers, one at a time, so that the signal comes with cancels still to send.
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=3600), faults=FaultPlan(latency=0.05))
    ids = sim.add_jobs(30, statuses=("running",))
    journal = tmp_path / "cancel.jsonl"
    args: list[str | Path] = [
        "cancel",
        *ids,
        "--wait",
        "--concurrency",
        "1",
        "--journal",
        journal,
        "-q",
    ]
    async with sim.serve() as url:
        process = await spawn(args, url)
        await until(lambda: len(accepted(journal)) >= 4)
        sim.inject(FaultKind.HANG, endpoint="cancel", times=1000)  # the rest stay in flight

        def settled() -> bool:
            # Every cancel the API took is journaled, and the next one hangs unanswered.
            taken = {job_id for job_id in ids if sim.status(job_id) == "cancel_requested"}
            hanging = sim.counters["cancel"] > len(taken) or len(taken) == len(ids)
            return accepted(journal) == taken and hanging

        await until(settled)
        process.send_signal(signum)
        async with asyncio.timeout(PATIENCE):
            _out, err = await process.communicate()
        assert process.returncode == status, err.decode()
        stderr = err.decode()
        assert "Traceback" not in stderr
        assert "Interrupted: 30 of 30 jobs have no result." in stderr
        header, _lines = facts(journal)
        assert header["command"] == "cancel"
        assert header["base_url"] == url
        before = accepted(journal)
        # Every cancel the API accepted is in the journal, and only those.
        assert before == {job_id for job_id in ids if sim.status(job_id) == "cancel_requested"}

        sim.clear_faults()
        sim.reset_counters()
        resumed = await invoke(
            "cancel", *ids, "--no-wait", "--journal", journal, "--json", base_url=url
        )
    assert resumed.exit_code == 0, resumed.stderr
    assert sim.counters["cancel"] == len(ids) - len(before)
    # Every job has its result; those accepted before say so, and were not sent again.
    records = {record["job_id"]: record for record in json_lines(resumed.stdout)}
    assert sorted(records) == sorted(ids)
    assert all(record["cancel_sent"] for record in records.values())
    assert f"journal: {len(before)} cancels accepted before; not sending them" in resumed.stderr


async def test_sigterm_while_waiting_then_resume_only_waits(tmp_path: Path) -> None:
    """SIGTERM once every cancel is accepted: the resume sends none and waits for all."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=3600))
    done = [sim.add_job("completed") for _ in range(2)]
    stuck = sim.add_jobs(5, statuses=("running",))
    journal = tmp_path / "cancel.jsonl"
    args: list[str | Path] = ["cancel", *done, *stuck, "--json", "--journal", journal]
    async with sim.serve() as url:
        process = await spawn(args, url)
        assert process.stdout is not None
        async with asyncio.timeout(PATIENCE):
            early = [await process.stdout.readline() for _ in done]
        await until(lambda: accepted(journal) == set(stuck))
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(PATIENCE):
            rest, err = await process.communicate()
        assert process.returncode == 143, err.decode()
        printed = json_lines(b"".join([*early, rest]).decode())
        assert sorted(record["job_id"] for record in printed) == sorted(done)
        assert "Interrupted: 5 of 7 jobs have no result." in err.decode()
        _, lines = facts(journal)
        assert all(set(line) <= {"id", "cancel_accepted", "status", "result"} for line in lines)

        sent = sim.counters["cancel"]
        no_wait = await invoke(
            "cancel", *done, *stuck, "--no-wait", "--journal", journal, base_url=url
        )
        assert no_wait.exit_code == 0, no_wait.stderr
        assert "2 of 7 jobs already done" in no_wait.stderr
        assert "5 cancels accepted before; not sending them again" in no_wait.stderr
        assert sim.counters["cancel"] == sent
        for job_id in stuck:
            sim.set_status(job_id, "cancelled")
        resumed = await invoke(
            "cancel", *done, *stuck, "--journal", journal, "--json", base_url=url
        )
    assert resumed.exit_code == 0, resumed.stderr
    assert sim.counters["cancel"] == sent  # not one cancel more
    records = json_lines(resumed.stdout)
    assert sorted(record["job_id"] for record in records) == sorted(stuck)
    assert all(record["status"] == "cancelled" and record["cancel_sent"] for record in records)
    assert "5 cancels accepted before; only waiting for them" in resumed.stderr
    assert "7 jobs: cancelled 5, done before (journal) 2" in resumed.stderr


@pytest.mark.parametrize(
    "module",
    [
        pytest.param("rich", id="while-importing"),
        # The package loads its names lazily, so the command's guard is in place before aiohttp.
        pytest.param("aiohttp", id="while-the-library-loads"),
    ],
)
async def test_ctrl_c_while_loading_gives_no_traceback(module: str) -> None:
    """Ctrl-C before the commands have loaded ends with one line and exit status 130."""
    interrupted_import = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "import finetune_ops._cli\n"
        "finetune_ops._cli.main()\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        interrupted_import,
        "list",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=child_env(),
    )
    async with asyncio.timeout(PATIENCE):
        out, err = await process.communicate()
    assert process.returncode == 130
    assert err.decode().strip() == "Interrupted."
    assert out == b""


# -- one run per journal, and a journal knows what it is for ------------------------------


async def test_second_run_on_a_journal_refuses_before_sending(tmp_path: Path) -> None:
    """While one run holds the journal, a second exits 2 having sent nothing."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=3600))
    ids = sim.add_jobs(4, statuses=("running",))
    journal = tmp_path / "cancel.jsonl"
    async with sim.serve() as url:
        first = await spawn(["cancel", *ids, "--journal", journal, "-q"], url)
        await until(lambda: accepted(journal) == set(ids))
        sim.reset_counters()
        second = await invoke("cancel", *ids, "--journal", journal, base_url=url)
        first.send_signal(signal.SIGTERM)
        async with asyncio.timeout(PATIENCE):
            await first.communicate()
    assert second.exit_code == 2
    assert "is in use by another run" in second.stderr
    assert sim.total_requests == 0


async def test_journal_for_another_command_or_api_refuses(sim: Simulator, tmp_path: Path) -> None:
    """A journal from `cancel` refuses `wait`, another base URL, and a file that is no journal."""
    ids = sim.add_jobs(2)
    journal = tmp_path / "cancel.jsonl"
    first = await invoke("cancel", *ids, "--journal", journal, base_url=sim.base_url)
    assert first.exit_code == 0, first.stderr
    sim.reset_counters()
    other_command = await invoke("wait", *ids, "--journal", journal, base_url=sim.base_url)
    assert other_command.exit_code == 2
    assert "belongs to `cancel`, not `wait`" in other_command.stderr
    other_api = await invoke("cancel", *ids, "--journal", journal, base_url="http://127.0.0.1:9/v1")
    assert other_api.exit_code == 2
    assert f"was written for {sim.base_url}" in other_api.stderr
    stranger = tmp_path / "notes.txt"
    stranger.write_text("my notes\n")
    not_journal = await invoke("cancel", *ids, "--journal", stranger, base_url=sim.base_url)
    assert not_journal.exit_code == 2
    assert "is not a finetune-ops journal" in not_journal.stderr
    assert stranger.read_text() == "my notes\n"
    assert sim.total_requests == 0


async def test_journal_naming_the_id_file_is_refused(sim: Simulator, tmp_path: Path) -> None:
    """--journal naming the --from-file input is a usage error; the id file is left alone."""
    ids = sim.add_jobs(2)
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join(ids) + "\n")
    result = await invoke(
        "cancel",
        "--from-file",
        listing,
        "--journal",
        tmp_path / "." / "ids.txt",
        base_url=sim.base_url,
    )
    assert result.exit_code == 2
    assert "is the --from-file input" in result.stderr
    assert listing.read_text() == "\n".join(ids) + "\n"
    assert sim.total_requests == 0


async def test_journal_lines_are_small_unless_asked(sim: Simulator, tmp_path: Path) -> None:
    """Result lines hold id, outcome, status and error; --journal-records adds the record."""
    small, full = tmp_path / "small.jsonl", tmp_path / "full.jsonl"
    first, second = sim.add_jobs(2)
    await invoke("cancel", first, "--journal", small, base_url=sim.base_url)
    await invoke("cancel", second, "--journal", full, "--journal-records", base_url=sim.base_url)
    header, lines = facts(small)
    assert set(header) == {"format", "version", "form", "command", "base_url", "created_at"}
    assert (header["format"], header["version"], header["form"]) == (
        "finetune-ops/batch",
        1,
        "journal",
    )
    assert lines == [
        {"id": first, "cancel_accepted": True, "status": "cancelled"},
        {
            "id": first,
            "status": "cancelled",
            "cancel_accepted": True,
            "result": {
                "ok": True,
                "status": "cancelled",
                "cancel_sent": True,
                "attempts": 1,
                "error": None,
            },
        },
    ]
    # The journal is the batch's state written as it changes: folded, it is that state.
    state = BatchState([first])
    for line in lines:
        state.apply(line)
    assert state.result(first) is not None
    assert state.jobs[first].cancel_accepted
    _, [_, result] = facts(full)
    assert result["job"]["id"] == second
    assert result["job"]["status"] == "cancelled"


HEADER = {"format": "finetune-ops/batch", "version": 1, "form": "journal", "command": "cancel"}


async def test_resume_reads_a_large_journal_in_bounded_memory(tmp_path: Path) -> None:
    """A 50,000-job journal is resumed without holding its lines: every job skipped, none sent."""
    import tracemalloc

    from finetune_ops._cli._journal import Journal

    url = "http://127.0.0.1:9/v1"
    path = tmp_path / "big.jsonl"
    ids = [f"ft-{index:08d}" for index in range(50_000)]
    result = {"ok": True, "status": "cancelled", "cancel_sent": True, "attempts": 1, "error": None}
    with path.open("w") as file:
        header = {**HEADER, "base_url": url, "created_at": "2026-01-01T00:00:00Z"}
        file.write(json.dumps(header) + "\n")
        for job_id in ids:
            file.write(json.dumps({"id": job_id, "cancel_accepted": True}) + "\n")
            line = {"id": job_id, "status": "cancelled", "result": result}
            file.write(json.dumps({**line, "job": {"id": job_id, "pad": "x" * 900}}) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    journal = Journal(path, command="cancel", base_url=url, records=False).open()
    try:
        state = journal.state(ids)
    finally:
        journal.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert state.pending == []
    assert all(state.jobs[job_id].cancel_accepted for job_id in ids)
    assert peak < size / 4  # per-id progress only, never the file's lines


# -- a closed stdout and a full disk -----------------------------------------------------


async def test_closed_stdout_stops_the_batch_exit_141(tmp_path: Path) -> None:
    """`| head -1`: the batch stops, every accepted cancel is journaled, exit status 141."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=3600))
    done = sim.add_job("completed")
    stuck = sim.add_jobs(6, statuses=("running",))
    journal = tmp_path / "cancel.jsonl"
    async with sim.serve() as url:
        process = await spawn(["cancel", done, *stuck, "--json", "--journal", journal], url)
        assert process.stdout is not None
        assert process.stderr is not None
        async with asyncio.timeout(PATIENCE):
            first = await process.stdout.readline()
        assert json.loads(first)["job_id"] == done
        process._transport.get_pipe_transport(1).close()  # type: ignore[attr-defined]
        await until(lambda: accepted(journal) == set(stuck))
        for job_id in stuck:
            sim.set_status(job_id, "cancelled")
        async with asyncio.timeout(PATIENCE):
            err = await process.stderr.read()
            await process.wait()
    assert process.returncode == 141, err.decode()
    stderr = err.decode()
    assert "Traceback" not in stderr
    assert "stdout was closed" in stderr
    facts(journal)  # every line whole


async def test_closed_stdout_on_list_exit_141() -> None:
    """`finetune-ops list | head -1` ends quietly with exit status 141."""
    server = Simulator()
    server.add_jobs(3000)
    script = 'python -c "$BOOTSTRAP" list | head -1 >/dev/null; exit "${PIPESTATUS[0]}"'
    async with server.serve() as url:
        env = child_env(url) | {"BOOTSTRAP": BOOTSTRAP, "PATH": str(Path(sys.executable).parent)}
        process = await asyncio.create_subprocess_exec(
            "/bin/bash",
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
        )
        async with asyncio.timeout(PATIENCE):
            _, err = await process.communicate()
    assert process.returncode == 141, err.decode()
    assert "Traceback" not in err.decode()
    assert "Exception ignored" not in err.decode()


async def run_quietly(*command: str) -> int:
    """Run a short system command; its exit status."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await process.wait()


@pytest.mark.parametrize("full", ["tmpfs", "file-size limit"])
async def test_journal_write_failure_is_one_error_line(tmp_path: Path, full: str) -> None:
    """A full disk: one error line, the summary, exit 1, and only whole lines in the journal."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0))
    ids = sim.add_jobs(40, statuses=("running",))
    limit: Callable[[], None] | None = None
    if full == "tmpfs":
        # A 4 KiB filesystem, when the test may mount one (as root); else the limit below.
        disk = tmp_path / "disk"
        disk.mkdir()
        if await run_quietly("mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)) != 0:
            pytest.skip("cannot mount a tmpfs here (not root, or not allowed)")
        journal = disk / "cancel.jsonl"
        reason = "No space left on device"
    else:
        journal = tmp_path / "cancel.jsonl"
        reason = "File too large"

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    args: list[str | Path] = [
        "cancel",
        *ids,
        "--no-wait",
        "--journal",
        journal,
        "-q",
        "--concurrency",
        "2",
    ]
    try:
        async with sim.serve() as url:
            process = await spawn(args, url, preexec_fn=limit)
            async with asyncio.timeout(PATIENCE):
                out, err = await process.communicate()
        stderr = err.decode()
        assert process.returncode == 1, stderr
        assert "Traceback" not in stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1
        assert f"cannot write: {reason}" in errors[0]
        assert "40 jobs: cancelled" in out.decode()  # the summary of what completed
        header, lines = facts(journal)
        assert header["command"] == "cancel"
        assert 0 < len(lines) < 2 * len(ids)
    finally:
        if full == "tmpfs":
            await run_quietly("umount", str(journal.parent))


@pytest.mark.parametrize("output", ["--json", "-q"])
async def test_full_disk_on_stdout_is_one_error_line(tmp_path: Path, output: str) -> None:
    """Results to a full disk (/dev/full): one error line, the journal whole, exit 1."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0))
    ids = sim.add_jobs(5, statuses=("running",))
    journal = tmp_path / "cancel.jsonl"
    async with sim.serve() as url:
        with Path("/dev/full").open("w") as full:  # noqa: ASYNC230 (a device, never blocks)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                BOOTSTRAP,
                "cancel",
                *ids,
                output,
                "--journal",
                str(journal),
                stdout=full,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                env=child_env(url),
            )
            async with asyncio.timeout(PATIENCE):
                _, err = await process.communicate()
    stderr = err.decode()
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: stopped early: cannot write to stdout: No space left on device"]
    facts(journal)  # every line whole


async def test_full_disk_on_stdout_for_list() -> None:
    """`finetune-ops list > /dev/full`: one error line, exit 1, no traceback."""
    sim = Simulator()
    sim.add_jobs(3)
    async with sim.serve() as url:
        with Path("/dev/full").open("w") as full:  # noqa: ASYNC230 (a device, never blocks)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                BOOTSTRAP,
                "list",
                stdout=full,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                env=child_env(url),
            )
            async with asyncio.timeout(PATIENCE):
                _, err = await process.communicate()
    assert process.returncode == 1, err.decode()
    assert err.decode().strip() == "error: cannot write to stdout: No space left on device"


# -- the resume rule, for any history of facts -------------------------------------------

_RESULTS = st.builds(
    lambda ok, status, sent: {
        "ok": ok,
        "status": status if ok else None,
        "cancel_sent": sent,
        "attempts": 1,
        "error": None if ok else {"type": "WaitTimeoutError", "message": "not yet"},
    },
    st.booleans(),
    st.sampled_from(["cancelled", "completed", "error", "cancel_requested"]),
    st.booleans(),
)
_FACTS = st.one_of(
    st.just({"cancel_accepted": True}),
    _RESULTS.map(lambda result: {"result": result, "cancel_accepted": result["cancel_sent"]}),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(st.tuples(st.integers(0, 5), _FACTS), max_size=30),
    wait=st.booleans(),
)
def test_resume_never_resends_an_accepted_cancel(
    tmp_path_factory: pytest.TempPathFactory, history: list[tuple[int, dict[str, Any]]], wait: bool
) -> None:
    """Whatever the journal holds, every id is done or runs again, and no accepted one is resent."""
    from finetune_ops._cli._journal import Journal

    ids = [f"ft-{index}" for index in range(6)]
    path = tmp_path_factory.mktemp("journal") / "cancel.jsonl"
    url = "http://127.0.0.1:9/v1"
    lines = [{**HEADER, "base_url": url}]
    lines += [{"id": ids[index], **fact} for index, fact in history]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    journal = Journal(path, command="cancel", base_url=url, records=False).open()
    try:
        state = journal.state(ids)
    finally:
        journal.close()
    state.reopen(unended=wait)
    assert sorted([*state.pending, *state.finished]) == ids
    sent_before = {ids[index] for index, fact in history if fact["cancel_accepted"]}
    assert sent_before == {job_id for job_id in ids if state.jobs[job_id].cancel_accepted}
    last = {ids[index]: fact.get("result") for index, fact in history if "result" in fact}
    for job_id in state.finished:
        result = last[job_id]
        assert result is not None
        assert result["ok"]
        if wait:
            assert result["status"] != "cancel_requested"
