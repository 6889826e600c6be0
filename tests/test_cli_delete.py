"""`finetune-ops delete` and `finetune-ops checkpoints`, driven against a served simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest_asyncio
from test_cli import answer_at_prompt, invoke, json_lines

from finetune_ops.testing import Lifecycle, Simulator


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A served simulator whose cancels land at once (cancel_delay=0)."""
    simulator = Simulator(lifecycle=Lifecycle(cancel_delay=0))
    async with simulator.serve():
        yield simulator


def _exists(sim: Simulator, job_id: str) -> bool:
    try:
        sim.status(job_id)
    except Exception:
        return False
    return True


async def test_delete_ended_jobs(sim: Simulator) -> None:
    """Ended jobs are deleted: one JSON result each with deleted true; exit 0."""
    ids = sim.add_jobs(3, statuses=("cancelled", "completed", "error"))
    result = await invoke("delete", *ids, "--yes", "--json", base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    assert sorted(record["job_id"] for record in records) == sorted(ids)
    assert all(record["ok"] and record["deleted"] for record in records)
    assert sim.counters["delete"] == 3
    assert not any(_exists(sim, job_id) for job_id in ids)
    assert "3 jobs to delete" in result.stderr


async def test_delete_by_selection_human_summary(sim: Simulator) -> None:
    """--status selects among all jobs, ended ones included; the summary says deleted."""
    ended = sim.add_jobs(2, statuses=("cancelled",))
    running = sim.add_jobs(1, statuses=("running",))
    result = await invoke("delete", "--status", "cancelled", "--yes", base_url=sim.base_url)
    assert result.exit_code == 0, result.stderr
    assert "deleted" in result.stdout
    assert not any(_exists(sim, job_id) for job_id in ended)
    assert sim.status(running[0]) == "running"


async def test_active_job_refused_unless_cancel_first(sim: Simulator) -> None:
    """An active job fails on its own (exit 1) and stays; --cancel-first deletes it."""
    (active,) = sim.add_jobs(1, statuses=("running",))
    (ended,) = sim.add_jobs(1, statuses=("completed",))
    refused = await invoke("delete", active, ended, "--yes", "--json", base_url=sim.base_url)
    assert refused.exit_code == 1, refused.stderr
    by_id = {record["job_id"]: record for record in json_lines(refused.stdout)}
    assert by_id[active]["ok"] is False
    assert by_id[active]["deleted"] is False
    assert by_id[active]["error"]["type"] == "ActiveJobError"
    assert by_id[ended]["deleted"] is True
    assert sim.status(active) == "running"

    forced = await invoke(
        "delete", active, "--cancel-first", "--yes", "--json", base_url=sim.base_url
    )
    assert forced.exit_code == 0, forced.stderr
    (record,) = json_lines(forced.stdout)
    assert record["deleted"] is True
    assert record["cancel_sent"] is True
    assert not _exists(sim, active)


async def test_dry_run_sends_nothing(sim: Simulator) -> None:
    """--dry-run prints exactly the selected jobs and sends no delete and no cancel."""
    ended = sim.add_jobs(2, statuses=("error",))
    sim.add_jobs(2, statuses=("running",))
    result = await invoke(
        "delete", "--status", "error", "--dry-run", "-o", "jsonl", base_url=sim.base_url
    )
    assert result.exit_code == 0, result.stderr
    rows = json_lines(result.stdout)
    assert sorted(row["id"] for row in rows) == sorted(ended)
    assert {row["action"] for row in rows} == {"delete"}
    assert sim.counters["delete"] == 0
    assert sim.counters["cancel"] == 0
    assert all(_exists(sim, job_id) for job_id in ended)


async def test_not_found_fails_per_job(sim: Simulator) -> None:
    """A 404 fails that job alone (exit 1); the others are deleted."""
    (ended,) = sim.add_jobs(1, statuses=("cancelled",))
    missing = "ft-00000000-0000-0000-0000-000000000000"
    result = await invoke("delete", ended, missing, "--yes", "--json", base_url=sim.base_url)
    assert result.exit_code == 1, result.stderr
    by_id = {record["job_id"]: record for record in json_lines(result.stdout)}
    assert by_id[ended]["deleted"] is True
    assert by_id[missing]["ok"] is False
    assert by_id[missing]["error"]["status_code"] == 404
    assert missing in result.stderr


async def test_without_yes_and_no_terminal_exits_2(sim: Simulator) -> None:
    """Not on a terminal, delete without --yes cannot ask: exit 2, nothing sent."""
    ids = sim.add_jobs(1, statuses=("cancelled",))
    result = await invoke("delete", *ids, base_url=sim.base_url)
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert sim.counters["delete"] == 0


async def test_nothing_to_delete_exits_2(sim: Simulator) -> None:
    result = await invoke("delete", "--yes", base_url=sim.base_url)
    assert result.exit_code == 2
    assert "nothing to delete" in result.stderr


async def _delete_at_prompt(answer: bytes) -> tuple[int, str, Simulator, list[str]]:
    sim = Simulator()
    ids = sim.add_jobs(2, statuses=("completed",))
    async with sim.serve() as url:
        code, err = await answer_at_prompt(url, ["delete", *ids], answer)
    return code, err, sim, ids


async def test_prompt_states_the_count_and_no_exits_4() -> None:
    """On a terminal delete asks with the count; "n" deletes nothing: exit status 4."""
    code, err, sim, _ids = await _delete_at_prompt(b"n\n")
    assert code == 4, err
    assert "2 jobs to delete" in err
    assert "Delete all 2?" in err
    assert "Nothing was deleted." in err
    assert sim.counters["delete"] == 0


async def test_prompt_yes_deletes() -> None:
    code, err, sim, ids = await _delete_at_prompt(b"y\n")
    assert code == 0, err
    assert sim.counters["delete"] == 2
    assert not any(_exists(sim, job_id) for job_id in ids)


async def test_delete_help_has_no_journal() -> None:
    result = await invoke("delete", "--help", base_url=None)
    assert result.exit_code == 0
    assert "--cancel-first" in result.stdout
    assert "--journal" not in result.stdout


# -- checkpoints -----------------------------------------------------------------------------


async def test_checkpoints_table_and_json(sim: Simulator) -> None:
    """A completed job's checkpoints: a table with its final model, and the same as JSON."""
    job_id = sim.add_job("completed", n_checkpoints=2)
    table = await invoke("checkpoints", job_id, base_url=sim.base_url)
    assert table.exit_code == 0, table.stderr
    assert "Final" in table.stdout
    assert "step" in table.stdout
    as_json = await invoke("checkpoints", job_id, "-o", "json", base_url=sim.base_url)
    assert as_json.exit_code == 0, as_json.stderr
    records = json.loads(as_json.stdout)
    assert [record["checkpoint_type"] for record in records][-1] == "Final"
    assert len(records) == 2
    assert all(record["path"] for record in records)
    lines = await invoke("checkpoints", job_id, "--json", base_url=sim.base_url)
    assert json_lines(lines.stdout) == records


async def test_checkpoints_of_a_missing_job_fails(sim: Simulator) -> None:
    result = await invoke(
        "checkpoints", "ft-00000000-0000-0000-0000-000000000000", base_url=sim.base_url
    )
    assert result.exit_code == 1
    assert "404" in result.stderr or "not found" in result.stderr.lower()
