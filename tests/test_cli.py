"""The finetune-ops command line, driven as a user would against a served simulator.

Most tests run the click command through CliRunner in a worker thread (the
command calls asyncio.run, so it needs a thread of its own while this test's
loop serves the simulator). What only a real process shows (the `python -m`
entry point, Ctrl-C, the simulator server, a missing extra) runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

from finetune_ops import JobManager
from finetune_ops._cli import INSTALL_HINT
from finetune_ops._cli._app import cli
from finetune_ops._cli._inputs import parse_id_lines
from finetune_ops.testing import FaultKind, Lifecycle, ManualClock, RateLimit, Simulator

RESULT_KEYS = {"job_id", "ok", "status", "cancel_sent", "attempts", "elapsed", "error", "job"}
RESULT_LINE_KEYS = {"id", "status", "cancel_accepted", "result"}

#: Variables that would change what the command does or how it renders.
_CLEARED = (
    "TOGETHER_API_KEY",
    "TOGETHER_BASE_URL",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "NO_COLOR",
    "COLUMNS",
)

#: A bound on every await of a subprocess, so that a bug fails the test instead of hanging it.
PATIENCE = 30.0


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A served simulator whose cancels land at once (cancel_delay=0)."""
    simulator = Simulator(lifecycle=Lifecycle(cancel_delay=0))
    async with simulator.serve():
        yield simulator


async def invoke(
    *args: str | Path,
    base_url: str | None,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
) -> Result:
    """Run `finetune-ops ARGS` in a worker thread, with a clean environment."""
    environment: dict[str, str | None] = dict.fromkeys(_CLEARED)
    environment["TOGETHER_BASE_URL"] = base_url
    environment.update(env or {})
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke,
        cli,
        [str(arg) for arg in args],
        input=input,
        env=environment,
        prog_name="finetune-ops",
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of stdout, parsed; fails if any line is not a JSON object."""
    records = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(record, dict) for record in records)
    return records


def child_env(base_url: str | None = None) -> dict[str, str]:
    """The environment for a subprocess: this one without the variables a test controls."""
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    if base_url is not None:
        env["TOGETHER_BASE_URL"] = base_url
    return env


# -- cancel: results and exit codes ----------------------------------------------------


async def test_cancel_json_lines(sim: Simulator) -> None:
    """--json prints one JSON result per job on stdout and nothing else; exit 0."""
    ids = sim.add_jobs(4)
    result = await invoke("cancel", *ids, "--json", base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    assert sorted(record["job_id"] for record in records) == sorted(ids)
    for record in records:
        assert set(record) == RESULT_KEYS
        assert record["ok"] is True
        assert record["status"] == "cancelled"
        assert record["cancel_sent"] is True
        assert record["error"] is None
        assert record["job"]["id"] == record["job_id"]
        assert record["job"]["status"] == "cancelled"
        assert record["attempts"] >= 1
    assert all(sim.status(job_id) == "cancelled" for job_id in ids)


async def test_cancel_no_wait_returns_cancel_requested() -> None:
    """--no-wait returns once each cancel is accepted, with the job still stopping."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=3600))
    ids = sim.add_jobs(3, statuses=("running",))
    async with sim.serve() as url:
        result = await invoke("cancel", *ids, "--no-wait", "--json", base_url=url)
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    assert {record["status"] for record in records} == {"cancel_requested"}
    assert sim.counters["retrieve"] == 0
    assert sim.counters["list"] == 0


async def test_cancel_human_summary(sim: Simulator) -> None:
    """Without --json, stdout gets a summary table and stderr plain progress lines."""
    ids = sim.add_jobs(3)
    result = await invoke("cancel", *ids, base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    assert "cancelled" in result.stdout
    assert "total" in result.stdout
    assert "3/3 done" in result.stderr
    assert "{" not in result.stdout


async def test_progress_says_when_requests_are_paced() -> None:
    """While the API throttles, the progress line shows the pace the manager keeps, and why."""
    sim = Simulator(rate_limit=RateLimit(requests=20, per=0.2))
    ids = sim.add_jobs(200)
    async with sim.serve() as url:
        result = await invoke(
            "cancel", "--no-wait", "--from-file", "-", base_url=url, input="\n".join(ids)
        )
    assert result.exit_code == 0, result.stderr
    assert "paced at" in result.stderr or "holding requests" in result.stderr


async def test_some_jobs_fail_exit_1(sim: Simulator) -> None:
    """An unknown id fails on its own: exit 1, listed on stderr, the rest cancelled."""
    good = sim.add_job("running")
    result = await invoke("cancel", good, "ft-unknown", "--json", base_url=sim.base_url)
    assert result.exit_code == 1
    by_id = {record["job_id"]: record for record in json_lines(result.stdout)}
    assert by_id[good]["ok"] is True
    missing = by_id["ft-unknown"]
    assert missing["ok"] is False
    assert missing["job"] is None
    assert missing["error"]["type"] == "NotFoundError"
    assert missing["error"]["status_code"] == 404
    assert "failed: ft-unknown: NotFoundError" in result.stderr
    assert "1 of 2 jobs failed." in result.stderr
    assert "2 jobs: cancelled 1, failed 1" in result.stderr
    assert sim.counters["cancel"] == 2


@pytest.mark.parametrize("command", ["cancel", "wait", "status", "events"])
async def test_invalid_id_is_a_usage_error(sim: Simulator, command: str) -> None:
    """A malformed id is exit 2 for every command, and nothing at all is sent."""
    good = sim.add_job("running")
    args = [good, "not-a-job-id"] if command != "events" else ["not-a-job-id"]
    result = await invoke(command, *args, base_url=sim.base_url)
    assert result.exit_code == 2
    assert "invalid job id 'not-a-job-id'" in result.stderr
    assert sim.total_requests == 0


async def test_already_finished_jobs_are_fine(sim: Simulator) -> None:
    """A job that had already ended counts as done: no cancel is recorded as sent."""
    job_id = sim.add_job("completed")
    result = await invoke("cancel", job_id, "--json", base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert record["ok"] is True
    assert record["status"] == "completed"
    assert record["cancel_sent"] is False


async def test_retries_through_faults(sim: Simulator) -> None:
    """Faults on cancel are retried; every job still ends cancelled."""
    ids = sim.add_jobs(3)
    sim.inject(FaultKind.RATE_LIMIT_MS, endpoint="cancel", times=2)
    sim.inject(FaultKind.UNAVAILABLE_503, endpoint="cancel")
    result = await invoke("cancel", *ids, "--json", base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    assert all(record["ok"] for record in records)
    assert sum(record["attempts"] for record in records) == len(ids) + 3


async def test_wait_timeout_exit_1() -> None:
    """wait gives up on a job that is still running at --timeout: exit 1."""
    sim = Simulator()
    job_id = sim.add_job("running")
    async with sim.serve() as url:
        result = await invoke("wait", job_id, "--timeout", "0.1", "--json", base_url=url)
    assert result.exit_code == 1
    [record] = json_lines(result.stdout)
    assert record["error"]["type"] == "WaitTimeoutError"
    assert record["job"]["status"] == "running"
    assert sim.counters["cancel"] == 0


async def test_wait_for_finished_jobs(sim: Simulator) -> None:
    """wait returns jobs that are already terminal at once, cancelling none: exit 0."""
    ids = [sim.add_job("completed"), sim.add_job("cancelled")]
    result = await invoke("wait", *ids, "--json", base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    assert {record["status"] for record in json_lines(result.stdout)} == {
        "completed",
        "cancelled",
    }
    assert sim.counters["cancel"] == 0


async def test_wait_fails_on_failed_training(sim: Simulator) -> None:
    """wait exits 1 when a job ended in error or user_error, unless --fail-on none."""
    ids = [sim.add_job("completed"), sim.add_job("user_error"), sim.add_job("error")]
    failed = await invoke("wait", *ids, "--json", base_url=sim.base_url)
    assert failed.exit_code == 1
    assert f"failed: {ids[1]}: ended user_error (--fail-on)" in failed.stderr
    assert "3 jobs: completed 1, failed 2" in failed.stderr
    accepted = await invoke("wait", *ids, "--fail-on", "none", base_url=sim.base_url)
    assert accepted.exit_code == 0, accepted.stderr
    only_error = await invoke("wait", *ids, "--fail-on", "error", base_url=sim.base_url)
    assert only_error.exit_code == 1
    assert "failed (ended error)" in only_error.stdout
    bad = await invoke("wait", *ids, "--fail-on", "failed", base_url=sim.base_url)
    assert bad.exit_code == 2
    assert "not a terminal status" in bad.stderr
    help_text = await invoke("wait", "--help", base_url=None)
    assert "failed)" not in help_text.stdout
    assert "user_error" in help_text.stdout


# -- usage and configuration errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["cancel", "ft-a", "--base-url", "ftp://example.com"], {}, "http(s) URL"),
        (["cancel", "ft-a", "--base-url", "http://example.com/v1"], {}, "--allow-insecure-http"),
        (["cancel", "ft-a", "--api-key-file", "/nonexistent/key"], {}, "cannot read the API key"),
        (["cancel", "ft-a", "--base-url", "https://api.example.com/v1"], {}, "no API key"),
        (["cancel", "--from-file", "/nonexistent/ids.txt"], {}, "cannot read job ids"),
        (["cancel"], {}, "nothing to cancel"),
        (["cancel", "ft-a", "--all-active", "--yes"], {}, "give no ids"),
        (["wait"], {}, "nothing to wait for"),
        (["events", "bad id"], {}, "invalid job id"),
        (["list"], {"TOGETHER_API_KEY": "two\nlines"}, "line break"),
        (["list", "--json", "-o", "csv"], {}, "--json means -o jsonl"),
        (["cancel", "ft-a", "--journal-records"], {}, "give --journal PATH"),
        (["cancel", "--status", "completed", "--yes"], {}, "only jobs that have not ended"),
    ],
)
async def test_usage_errors_exit_2(
    sim: Simulator, args: list[str], env: dict[str, str], message: str
) -> None:
    """A usage or configuration error is one line on stderr, exit 2, and nothing is sent."""
    result = await invoke(*args, base_url=sim.base_url, env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert sim.total_requests == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cancel", "ft-a", "--concurrency", "0"], "--concurrency"),
        (["list", "--status", "runing"], "choose from cancel_requested, cancelled, completed"),
        (["cancel", "--status", "runing", "--yes"], "'runing' is not a job status"),
        (["wait", "ft-a", "--timeout", "soon"], "not a duration like 90s"),
        (["list", "--created-after", "yesterday"], "neither a duration ago"),
        (["list", "-o", "yaml"], "'yaml' is not one of"),
    ],
)
async def test_bad_option_value_exit_2(sim: Simulator, args: list[str], message: str) -> None:
    """click's own usage errors (a bad value, an unknown status) also exit 2, sending nothing."""
    result = await invoke(*args, base_url=sim.base_url)
    assert result.exit_code == 2
    assert message in result.stderr
    assert sim.total_requests == 0


async def test_key_file_is_used_and_never_printed(tmp_path: Path) -> None:
    """The key comes from --api-key-file; a wrong key fails with a hint; neither is printed."""
    secret = "sk-test-very-secret-1234"
    sim = Simulator(api_key=secret)
    job_id = sim.add_job("running")
    good = tmp_path / "key"
    good.write_text(secret + "\n")
    bad = tmp_path / "wrong"
    bad.write_text("sk-wrong-key-5678")
    async with sim.serve() as url:
        ok = await invoke("status", job_id, "--api-key-file", good, base_url=url)
        refused = await invoke("cancel", job_id, "--api-key-file", bad, base_url=url)
        from_env = await invoke("list", base_url=url, env={"TOGETHER_API_KEY": secret})
    assert ok.exit_code == 0, ok.stderr
    assert job_id in ok.stdout
    assert refused.exit_code == 3
    assert "AuthenticationError" in refused.stderr
    assert "TOGETHER_API_KEY" in refused.stderr  # the hint
    assert from_env.exit_code == 0
    for result in (ok, refused, from_env):
        assert secret not in result.output
        assert "sk-wrong-key-5678" not in result.output


# -- --all-active ----------------------------------------------------------------------


async def test_all_active_needs_yes_without_terminal(sim: Simulator) -> None:
    """With stdin not a terminal, --all-active never prompts: without --yes it exits 2."""
    sim.add_jobs(3)
    result = await invoke("cancel", "--all-active", base_url=sim.base_url, input="y\n")
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert sim.total_requests == 0


async def test_all_active_with_yes(sim: Simulator) -> None:
    """--all-active --yes cancels every job that has not ended, and only those."""
    active = sim.add_jobs(4)
    finished = [sim.add_job("completed"), sim.add_job("cancelled")]
    result = await invoke("cancel", "--all-active", "--yes", "--json", base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    assert sorted(record["job_id"] for record in json_lines(result.stdout)) == sorted(active)
    assert "4 active jobs to cancel" in result.stderr
    assert sim.counters["list"] >= 1
    assert sim.counters["cancel"] == len(active)
    assert [sim.status(job_id) for job_id in finished] == ["completed", "cancelled"]


async def test_all_active_with_none_active(sim: Simulator) -> None:
    """--all-active with nothing active says so and exits 0."""
    sim.add_job("completed")
    result = await invoke("cancel", "--all-active", "--yes", base_url=sim.base_url)
    assert result.exit_code == 0
    assert "No jobs match the selection" in result.stderr
    assert sim.counters["cancel"] == 0


# -- ids from a file ---------------------------------------------------------------------


def test_parse_id_lines() -> None:
    """Blank lines and # comments are skipped; surrounding space is dropped."""
    lines = ["# sweep 7\n", "ft-a\n", "\n", "  ft-b  # retry\n", "ft-c"]
    assert parse_id_lines(lines) == ["ft-a", "ft-b", "ft-c"]


async def test_from_file_and_stdin(sim: Simulator, tmp_path: Path) -> None:
    """--from-file reads ids from a file, or from stdin with '-', along with arguments."""
    ids = sim.add_jobs(4)
    listing = tmp_path / "ids.txt"
    listing.write_text(f"# to cancel\n{ids[0]}\n\n{ids[1]}  # twice\n{ids[1]}\n")
    from_file = await invoke(
        "cancel", ids[2], "--from-file", listing, "--json", base_url=sim.base_url
    )
    from_stdin = await invoke(
        "cancel", "--from-file", "-", "--json", base_url=sim.base_url, input=f"{ids[3]}\n"
    )
    assert from_file.exit_code == 0, from_file.stderr
    assert [record["job_id"] for record in json_lines(from_file.stdout)] != []
    assert sorted(record["job_id"] for record in json_lines(from_file.stdout)) == sorted(ids[:3])
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert [record["job_id"] for record in json_lines(from_stdin.stdout)] == [ids[3]]


# -- the journal -------------------------------------------------------------------------


async def test_journal_resume_sends_no_second_cancel(sim: Simulator, tmp_path: Path) -> None:
    """A rerun with the same journal skips jobs it recorded as done; a cut-off line is ignored."""
    ids = sim.add_jobs(6)
    journal = tmp_path / "cancel.jsonl"
    first = await invoke("cancel", *ids[:3], "--journal", journal, base_url=sim.base_url)
    assert first.exit_code == 0, first.stderr
    assert sim.counters["cancel"] == 3
    with journal.open("a") as file:
        file.write('{"id": "ft-cut-off-by-a-kill", "event"')  # no newline: a killed writer

    second = await invoke("cancel", *ids, "--journal", journal, "--json", base_url=sim.base_url)
    assert second.exit_code == 0, second.stderr
    assert sim.counters["cancel"] == 6  # only the three the journal did not have
    assert sorted(record["job_id"] for record in json_lines(second.stdout)) == sorted(ids[3:])
    assert "3 of 6 jobs already done" in second.stderr
    assert "unreadable lines 8" in second.stderr

    third = await invoke("cancel", *ids, "--journal", journal, "--json", base_url=sim.base_url)
    assert third.exit_code == 0, third.stderr
    assert third.stdout == ""
    assert sim.counters["cancel"] == 6

    header, *facts = journal.read_text().splitlines()
    assert json.loads(header)["command"] == "cancel"
    records = [json.loads(line) for line in facts if "cut-off" not in line]
    assert len(records) == 12  # an accepted line and a result line per job
    results = [record for record in records if "result" in record]
    assert sorted(record["id"] for record in results) == sorted(ids)
    assert all(set(record) == RESULT_LINE_KEYS and record["result"]["ok"] for record in results)


async def test_journal_retries_failed_jobs(tmp_path: Path) -> None:
    """A job whose journaled result is a failure is tried again on the next run."""
    sim = Simulator(api_key="sk-right", lifecycle=Lifecycle(cancel_delay=0))
    job_id = sim.add_job("running")
    journal = tmp_path / "cancel.jsonl"
    async with sim.serve() as url:
        wrong = {"TOGETHER_API_KEY": "sk-wrong"}
        first = await invoke("cancel", job_id, "--journal", journal, base_url=url, env=wrong)
        right = {"TOGETHER_API_KEY": "sk-right"}
        second = await invoke("cancel", job_id, "--journal", journal, base_url=url, env=right)
    assert first.exit_code == 3
    assert second.exit_code == 0, second.stderr
    _header, failed, accepted, cancelled = (
        json.loads(line) for line in journal.read_text().splitlines()
    )
    assert failed["result"]["ok"] is False
    assert failed["result"]["error"]["type"] == "AuthenticationError"
    assert accepted == {"id": job_id, "cancel_accepted": True, "status": "cancelled"}
    assert cancelled["result"]["ok"] is True
    assert cancelled["status"] == "cancelled"


# -- looking at jobs ---------------------------------------------------------------------


async def test_status_table(sim: Simulator) -> None:
    """status shows a table row per job; an unknown id is listed on stderr with exit 1."""
    running = sim.add_job("running", model="org/model-a")
    done = sim.add_job("completed")
    result = await invoke("status", running, done, base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    for text in ("id", "status", "model", "updated", "progress", running, done, "org/model-a"):
        assert text in result.stdout
    missing = await invoke("status", running, "ft-missing", base_url=sim.base_url)
    assert missing.exit_code == 1
    assert running in missing.stdout
    assert "ft-missing: NotFoundError" in missing.stderr


async def test_list_with_status_filter(sim: Simulator) -> None:
    """list --status keeps only jobs in the given statuses."""
    running = sim.add_job("running")
    queued = sim.add_job("queued")
    done = sim.add_job("completed")
    result = await invoke(
        "list", "--status", "running", "--status", "queued", "--json", base_url=sim.base_url
    )
    assert result.exit_code == 0, result.stderr
    assert sorted(record["id"] for record in json_lines(result.stdout)) == sorted([running, queued])
    table = await invoke("list", base_url=sim.base_url)
    assert all(job_id in table.stdout for job_id in (running, queued, done))
    assert "3 jobs" in table.stderr


async def test_events(sim: Simulator) -> None:
    """events prints a job's event log as a table, or as JSON lines."""
    job_id = sim.add_job("running")
    table = await invoke("events", job_id, base_url=sim.base_url)
    assert table.exit_code == 0, table.stderr
    assert "message" in table.stdout
    lines = await invoke("events", job_id, "--json", base_url=sim.base_url)
    events = json_lines(lines.stdout)
    assert [event["message"] for event in events] == [
        event["message"] for event in sim.events(job_id)
    ]
    unknown = await invoke("events", "ft-missing", base_url=sim.base_url)
    assert unknown.exit_code == 1
    assert "NotFoundError" in unknown.stderr


# -- demo --------------------------------------------------------------------------------


async def test_demo_cancels_everything() -> None:
    """demo runs its own simulator with faults and prints a summary: exit 0."""
    result = await invoke("demo", "--jobs", "30", "--cancel-delay", "0.05", base_url=None)
    assert result.exit_code == 0, result.stderr
    for text in ("Demo summary", "cancelled", "retries", "requests sent", "elapsed"):
        assert text in result.stdout
    assert "Every one of the 30 jobs" in result.stdout
    assert "30/30 done" in result.stderr


# -- real processes ----------------------------------------------------------------------


async def test_simulate_serves_until_ctrl_c() -> None:
    """`python -m finetune_ops simulate` prints its URL and export line, serves, stops on SIGINT."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "finetune_ops",
        "simulate",
        "--port",
        "0",
        "--jobs",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=child_env(),
    )
    assert process.stdout is not None
    async with asyncio.timeout(PATIENCE):
        banner = (await process.stdout.readline()).decode()
        export = (await process.stdout.readline()).decode().strip()
        assert export.startswith("export TOGETHER_BASE_URL=http://127.0.0.1:")
        base_url = export.split("=", 1)[1]
        assert base_url in banner
        async with JobManager(base_url=base_url) as jobs:
            assert len(await jobs.list()) == 5
        process.send_signal(signal.SIGINT)
        await process.communicate()
    assert process.returncode == 0


async def test_missing_extras_hint() -> None:
    """Without click and rich, the library imports and `python -m finetune_ops` exits 2: a hint."""
    blocked = (
        "import runpy, sys; sys.modules['click'] = sys.modules['rich'] = None; "
        "import finetune_ops, finetune_ops._cli; "
        "runpy.run_module('finetune_ops', run_name='__main__', alter_sys=True)"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        blocked,
        "demo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=child_env(),
    )
    async with asyncio.timeout(PATIENCE):
        out, err = await process.communicate()
    assert process.returncode == 2
    assert out == b""
    assert err.decode().strip() == INSTALL_HINT
    assert "pip install 'finetune-ops[cli]'" in INSTALL_HINT


# -- summaries, selectors, dry runs ------------------------------------------------------


async def test_summary_says_what_happened() -> None:
    """The summary counts cancelled, already ended, still cancelling and failed jobs."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=3600))
    running = sim.add_jobs(2, statuses=("running",))
    ended = sim.add_job("completed")
    async with sim.serve() as url:
        result = await invoke("cancel", *running, ended, "ft-unknown", "--no-wait", base_url=url)
    assert result.exit_code == 1
    assert "4 jobs: already ended 1, still cancelling 2, failed 1" in result.stdout
    for row in ("already ended (completed)", "still cancelling (cancel_requested)"):
        assert row in result.stdout
    assert "failed (NotFoundError)" in result.stdout
    assert "finished here" not in result.stdout


def _clocked() -> tuple[Simulator, dict[str, str]]:
    """A simulator with jobs a day apart: old queued, new queued, new running, and an ended one."""
    sim = Simulator(
        clock=ManualClock(epoch=datetime(2026, 1, 1, tzinfo=UTC)),
        lifecycle=Lifecycle(cancel_delay=0),
    )
    jobs = {"old": sim.add_job("queued", model="org/a", suffix="sweep-1")}
    sim.advance(86400)
    sim.set_status(jobs["old"], "queued")  # it had moved on to running meanwhile
    jobs["new"] = sim.add_job("queued", model="org/a", suffix="sweep-2")
    jobs["running"] = sim.add_job("running", model="org/b", suffix="sweep-2")
    jobs["ended"] = sim.add_job("completed", model="org/a", suffix="sweep-2")
    return sim, jobs


async def test_selectors_choose_jobs() -> None:
    """--status, --model, --created-before/--created-after and --suffix choose what is cancelled."""
    sim, jobs = _clocked()

    async def selected(*args: str) -> list[str]:
        result = await invoke("cancel", *args, "--dry-run", "-o", "jsonl", base_url=url)
        assert result.exit_code == 0, result.stderr
        return sorted(record["id"] for record in json_lines(result.stdout))

    async with sim.serve() as url:
        assert await selected("--status", "queued") == sorted([jobs["old"], jobs["new"]])
        assert await selected("--status", "queued", "--status", "running") == sorted(
            [jobs["old"], jobs["new"], jobs["running"]]
        )
        assert await selected("--model", "org/a") == sorted([jobs["old"], jobs["new"]])
        assert await selected("--created-before", "2026-01-01T12:00") == [jobs["old"]]
        assert await selected("--created-after", "2026-01-01T12:00Z") == sorted(
            [jobs["new"], jobs["running"]]
        )
        assert await selected("--suffix", "sweep-2") == sorted([jobs["new"], jobs["running"]])
        assert await selected("--created-before", "1h") == sorted(
            [jobs["old"], jobs["new"], jobs["running"]]
        )
        # With ids too, only those ids; an ended job is never selected for a cancel.
        assert await selected(jobs["old"], jobs["ended"], "--model", "org/a") == [jobs["old"]]
        waited = await invoke(
            "wait", "--suffix", "sweep-2", "--status", "completed", "--json", base_url=url
        )
    assert [record["job_id"] for record in json_lines(waited.stdout)] == [jobs["ended"]]
    assert sim.counters["cancel"] == 0


async def test_dry_run_prints_the_jobs_and_sends_nothing(tmp_path: Path) -> None:
    """--dry-run lists exactly the jobs it would act on, after the journal, and sends no cancel."""
    sim, jobs = _clocked()
    journal = tmp_path / "cancel.jsonl"
    async with sim.serve() as url:
        first = await invoke("cancel", jobs["old"], "--journal", journal, base_url=url)
        assert first.exit_code == 0, first.stderr
        sim.reset_counters()
        table = await invoke(
            "cancel", jobs["old"], jobs["new"], "--journal", journal, "--dry-run", base_url=url
        )
        selection = await invoke("cancel", "--all-active", "--dry-run", "-o", "csv", base_url=url)
    assert table.exit_code == 0, table.stderr
    assert jobs["new"] in table.stdout
    assert jobs["old"] not in table.stdout  # the journal has it as done
    assert "dry run: 1 jobs would be acted on; nothing was sent" in table.stderr
    rows = selection.stdout.splitlines()
    assert rows[0] == "id,action,status,model"
    assert sorted(row.split(",")[0] for row in rows[1:]) == sorted([jobs["new"], jobs["running"]])
    assert sim.counters["cancel"] == 0
    assert sim.counters["retrieve"] == 0


async def test_selection_with_yes_cancels_only_the_selection() -> None:
    """`cancel --status queued --yes` cancels the queued jobs and no other."""
    sim, jobs = _clocked()
    async with sim.serve() as url:
        result = await invoke("cancel", "--status", "queued", "--yes", "--json", base_url=url)
    assert result.exit_code == 0, result.stderr
    assert sorted(record["job_id"] for record in json_lines(result.stdout)) == sorted(
        [jobs["old"], jobs["new"]]
    )
    assert "2 active jobs to cancel" in result.stderr
    assert sim.status(jobs["running"]) == "running"
    assert sim.counters["cancel"] == 2


async def answer_at_prompt(base_url: str, args: Sequence[str], answer: bytes) -> tuple[int, str]:
    """Run `finetune-ops ARGS` with a terminal as stdin, type ``answer``: (exit status, stderr)."""
    controller, terminal = os.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "finetune_ops",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=terminal,
        env=child_env(base_url),
    )
    os.close(terminal)
    try:
        os.write(controller, answer)
        async with asyncio.timeout(PATIENCE):
            _, err = await process.communicate()
    finally:
        os.close(controller)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_answering_no_exits_4_and_sends_nothing() -> None:
    """At the prompt on a terminal, "n" cancels nothing: exit status 4."""
    sim = Simulator()
    sim.add_jobs(3)
    async with sim.serve() as url:
        code, err = await answer_at_prompt(url, ["cancel", "--all-active"], b"n\n")
    assert code == 4, err
    assert "Cancel all 3?" in err
    assert "Nothing was cancelled." in err
    assert sim.counters["cancel"] == 0


# -- output formats and options ----------------------------------------------------------


async def test_output_formats(sim: Simulator) -> None:
    """-o json is one array, -o jsonl a line per record, -o csv a header and rows."""
    ids = sim.add_jobs(3)
    as_json = await invoke("list", "-o", "json", base_url=sim.base_url)
    assert sorted(job["id"] for job in json.loads(as_json.stdout)) == sorted(ids)
    as_csv = await invoke("status", *ids, "-o", "csv", base_url=sim.base_url)
    header, *rows = as_csv.stdout.splitlines()
    assert header == "id,status,model,suffix,created_at,updated_at,model_output_name"
    assert sorted(row.split(",")[0] for row in rows) == sorted(ids)
    empty = await invoke("list", "--status", "error", "-o", "json", base_url=sim.base_url)
    assert json.loads(empty.stdout) == []
    events = await invoke("events", ids[0], "-o", "jsonl", base_url=sim.base_url)
    assert json_lines(events.stdout)
    results = await invoke("cancel", *ids, "-o", "csv", base_url=sim.base_url)
    assert results.exit_code == 0, results.stderr
    header, *rows = results.stdout.splitlines()
    assert header == "job_id,ok,status,cancel_sent,attempts,elapsed,error"
    assert {row.split(",")[2] for row in rows} == {"cancelled"}
    assert "3 jobs: cancelled 3" in results.stderr


async def test_timeout_takes_durations() -> None:
    """--timeout reads 90s, 15m, 1h; a job still running then fails: exit 1."""
    sim = Simulator()
    job_id = sim.add_job("running")
    async with sim.serve() as url:
        result = await invoke("wait", job_id, "--timeout", "0.1s", "--json", base_url=url)
    assert result.exit_code == 1
    [record] = json_lines(result.stdout)
    assert record["error"]["type"] == "WaitTimeoutError"


async def test_connection_options_before_the_command(tmp_path: Path) -> None:
    """--base-url and --api-key-file work before the command name as after it."""
    secret = "sk-before-the-command"
    sim = Simulator(api_key=secret)
    job_id = sim.add_job("running")
    key = tmp_path / "key"
    key.write_text(secret)
    async with sim.serve() as url:
        before = await invoke(
            "--base-url", url, "--api-key-file", key, "status", job_id, base_url=None
        )
        after = await invoke(
            "status", job_id, "--base-url", url, "--api-key-file", key, base_url=None
        )
    assert before.exit_code == 0, before.stderr
    assert after.exit_code == 0, after.stderr
    assert job_id in before.stdout


async def test_key_rules_are_the_librarys(tmp_path: Path) -> None:
    """The command accepts the keys the library accepts and needs none for localhost.localdomain."""
    sim = Simulator(api_key="sk with space")
    sim.add_job("running")
    async with sim.serve() as url:
        spaced = await invoke("list", base_url=url, env={"TOGETHER_API_KEY": "sk with space"})
    assert spaced.exit_code == 0, spaced.stderr
    loopback = await invoke("list", base_url="http://localhost.localdomain:9/v1")
    assert "no API key" not in loopback.stderr
    assert loopback.exit_code == 1  # nothing listens there: a connection error, not usage


async def test_shell_completion_script() -> None:
    """The documented completion variable prints a bash completion script."""
    result = await invoke(base_url=None, env={"_FINETUNE_OPS_COMPLETE": "bash_source"})
    assert result.exit_code == 0
    assert "_finetune_ops_completion" in result.stdout


# -- list at scale, and id files ---------------------------------------------------------


async def test_list_newest_first_with_limit() -> None:
    """list sorts by creation time, newest first; --limit keeps the first N."""
    sim, jobs = _clocked()
    async with sim.serve() as url:
        result = await invoke("list", "--limit", "3", "-o", "jsonl", base_url=url)
        table = await invoke("list", "--limit", "1", base_url=url)
    listed = [record["id"] for record in json_lines(result.stdout)]
    assert len(listed) == 3
    assert listed[-1] != jobs["old"]
    assert jobs["old"] not in listed  # the oldest comes last, past the limit
    assert "1 jobs" in table.stderr
    assert jobs["old"] not in table.stdout


async def test_id_file_with_bom_and_crlf(sim: Simulator, tmp_path: Path) -> None:
    """An id file saved with a UTF-8 byte-order mark and CRLF line ends is read correctly."""
    ids = sim.add_jobs(2)
    listing = tmp_path / "ids.txt"
    listing.write_bytes(("\ufeff" + "\r\n".join(ids) + "\r\n").encode())
    from_file = await invoke("cancel", "--from-file", listing, "--json", base_url=sim.base_url)
    from_stdin = await invoke(
        "wait",
        "--from-file",
        "-",
        "--json",
        base_url=sim.base_url,
        input="\ufeff" + ids[0] + "\r\n",
    )
    assert from_file.exit_code == 0, from_file.stderr
    assert sorted(record["job_id"] for record in json_lines(from_file.stdout)) == sorted(ids)
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert [record["job_id"] for record in json_lines(from_stdin.stdout)] == [ids[0]]
