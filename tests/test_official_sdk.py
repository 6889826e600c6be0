"""The official `together` SDK, whichever generation is installed, against the simulator.

Every fine-tunes call the SDK makes is driven through its documented methods,
with the sync and the async client, configured only by the lines the simulator
prints (TOGETHER_BASE_URL) and a key; SDK 3.x's `together` command too. SDK
3.x runs in strict response validation mode. CI runs this file once per generation, each in its own
virtual environment (.ci/run); each call is one test, so pytest's count is the
count of calls covered.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attrs
import pytest

from finetune_ops.testing import ManualClock, Simulator
from finetune_ops.testing.__main__ import client_lines

together: Any = pytest.importorskip("together")

GENERATION = int(version("together").split(".")[0])
KEY = "sk-sdk-test"
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


@attrs.frozen
class Seeded:
    """A served simulator with known jobs, and the SDK's clients for it."""

    sim: Simulator
    running: str
    done: str
    sync: Any
    make_async: Callable[[], Any]


def _printed_base_url(base_url: str) -> str:
    """The TOGETHER_BASE_URL the simulator prints for the installed SDK generation."""
    lines = client_lines(base_url, keyed=True)
    exports = [line.lstrip("# ").removeprefix("export TOGETHER_BASE_URL=") for line in lines]
    chosen = exports[0] if GENERATION < 2 else exports[-1]
    assert chosen.startswith("http://")
    return chosen


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Seeded]:
    """A simulator in a thread (the sync client blocks), a running and a completed job."""
    # SDK 1.x refuses the spec's event type names; it gets the older ones it knows.
    events = "spec" if GENERATION >= 2 else "legacy"
    sim = Simulator(api_key=KEY, clock=ManualClock(), event_types=events)
    running = sim.add_job("running", id="ft-sdk-running", model=MODEL)
    done = sim.add_job("completed", id="ft-sdk-done", model=MODEL, n_checkpoints=3)
    monkeypatch.chdir(tmp_path)  # SDK 1.x downloads into the working directory
    with sim.serve_in_thread() as base_url:
        monkeypatch.setenv("TOGETHER_BASE_URL", _printed_base_url(base_url))
        monkeypatch.setenv("TOGETHER_API_KEY", KEY)
        options: dict[str, Any] = {"max_retries": 0}
        if GENERATION >= 2:
            options["_strict_response_validation"] = True
        sync = together.Together(**options)
        try:
            yield Seeded(sim, running, done, sync, lambda: together.AsyncTogether(**options))
        finally:
            if hasattr(sync, "close"):
                sync.close()


def _field(value: Any, name: str) -> Any:
    return value[name] if isinstance(value, dict) else getattr(value, name)


# -- the calls: each takes the seeded simulator and a client ---------------------------------


def _create_v3(s: Seeded, client: Any) -> Any:
    return client.fine_tuning.create(
        training_file="file-sdk",
        model=MODEL,
        packing=False,
        max_seq_length=1024,
        random_seed=7,
        lr_scheduler_type="linear",
        batch_size="max",
        n_epochs=2,
    )


def _create_v1(s: Seeded, client: Any) -> Any:
    return client.fine_tuning.create(
        training_file="file-sdk",
        model=MODEL,
        lr_scheduler_type="linear",
        n_epochs=2,
        train_on_inputs="auto",  # unset, SDK 1.x logs through a deprecated logging call
    )


def _check_created(s: Seeded, job: Any) -> None:
    assert job.id in s.sim.job_ids()
    assert s.sim.status(job.id) == "pending"
    echoed = s.sim.job(job.id)
    assert echoed["n_epochs"] == 2
    assert echoed["lr_scheduler"]["lr_scheduler_type"] == "linear"
    if GENERATION >= 2:
        assert (echoed["packing"], echoed["max_seq_length"], echoed["random_seed"]) == (
            False,
            1024,
            7,
        )
    limits = s.sim.counters
    assert limits["model_limits"] + limits["estimate_price"] >= 1  # asked before creating


def _list(s: Seeded, result: Any) -> None:
    ids = [job.id for job in result.data]
    assert ids == [s.running, s.done]


def _retrieve(s: Seeded, job: Any) -> None:
    assert job.id == s.done
    assert _field(job, "status") in ("completed", together_status("completed"))
    # Money in the SDK's unit: nanodollars, so dollars = total_price / 1e9.
    assert job.total_price == s.sim.job(s.done)["total_price"]
    assert 0 < job.total_price / 1e9 < 1_000


def together_status(name: str) -> Any:
    """The SDK's status value for `name` (an enum in some generations)."""
    return getattr(getattr(together, "types", None), "FinetuneJobStatus", str)(name)


def _cancel(s: Seeded, job: Any) -> None:
    assert job.id == s.running
    assert s.sim.status(s.running) == "cancel_requested"


def _events(s: Seeded, result: Any) -> None:
    types = [str(_field(event, "type")) for event in result.data]
    assert any("job_complete" in kind.lower() for kind in types)


def _checkpoints(s: Seeded, result: Any) -> None:
    entries = result.data if hasattr(result, "data") else result
    assert len(entries) == 3


def _delete(s: Seeded, result: Any) -> None:
    assert s.done not in s.sim.job_ids()
    assert s.done in (result.message or "")


def _limits(s: Seeded, limits: Any) -> None:
    assert limits.lora_training.max_batch_size > 0


def _estimate(s: Seeded, estimate: Any) -> None:
    assert estimate.estimated_total_price > 0
    assert estimate.allowed_to_proceed is True


def _content(s: Seeded, response: Any) -> None:
    data = response.read() if hasattr(response, "read") else response
    _check_archive(s, data)


def _check_archive(s: Seeded, data: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        assert json.loads(member.read())["job_id"] == s.done


def _metrics(s: Seeded, result: Any) -> None:
    assert result.metrics


def _whoami(s: Seeded, result: Any) -> None:
    assert result.type == "project_api_key"


Call = tuple[Callable[[Seeded, Any], Any], Callable[[Seeded, Any], None]]

# name: (what to call on client.fine_tuning, how to check what came back)
V3_CALLS: dict[str, Call] = {
    "create": (_create_v3, _check_created),
    "list": (lambda s, c: c.fine_tuning.list(), _list),
    "retrieve": (lambda s, c: c.fine_tuning.retrieve(s.done), _retrieve),
    "cancel": (lambda s, c: c.fine_tuning.cancel(s.running), _cancel),
    "list_events": (lambda s, c: c.fine_tuning.list_events(s.done), _events),
    "list_checkpoints": (lambda s, c: c.fine_tuning.list_checkpoints(s.done), _checkpoints),
    "list_metrics": (lambda s, c: c.fine_tuning.list_metrics(s.done), _metrics),
    "delete": (lambda s, c: c.fine_tuning.delete(s.done), _delete),
    "model_limits": (lambda s, c: c.fine_tuning.model_limits(model_name=MODEL), _limits),
    "estimate_price": (
        lambda s, c: c.fine_tuning.estimate_price(training_file="file-sdk", model=MODEL),
        _estimate,
    ),
    "content": (lambda s, c: c.fine_tuning.content(ft_id=s.done, checkpoint="merged"), _content),
}
V1_CALLS: dict[str, Call] = {
    "create": (_create_v1, _check_created),
    "list": (lambda s, c: c.fine_tuning.list(), _list),
    "retrieve": (lambda s, c: c.fine_tuning.retrieve(s.done), _retrieve),
    "cancel": (lambda s, c: c.fine_tuning.cancel(s.running), _cancel),
    "list_events": (lambda s, c: c.fine_tuning.list_events(s.done), _events),
    "list_checkpoints": (lambda s, c: c.fine_tuning.list_checkpoints(s.done), _checkpoints),
    "delete": (lambda s, c: c.fine_tuning.delete(s.done), _delete),
    "get_model_limits": (lambda s, c: c.fine_tuning.get_model_limits(model=MODEL), _limits),
    "estimate_price": (
        lambda s, c: c.fine_tuning.estimate_price(training_file="file-sdk", model=MODEL),
        _estimate,
    ),
}
CALLS = V3_CALLS if GENERATION >= 2 else V1_CALLS


def _download_v1(s: Seeded, client: Any) -> Any:
    # SDK 1.x asks for the size first (a one-byte Range), then saves the archive.
    return client.fine_tuning.download(s.done, output="model.tar.gz")


def _downloaded(s: Seeded, result: Any) -> None:
    saved = Path(result.filename)
    assert saved.name == "model.tar.gz"
    assert result.size == saved.stat().st_size
    _check_archive(s, saved.read_bytes())


def _cli_list(s: Seeded, client: Any) -> Any:
    # The SDK's own `together` command, configured by the same environment.
    command = Path(sys.executable).with_name("together")
    return subprocess.run(
        [str(command), "fine-tuning", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def _cli_listed(s: Seeded, result: Any) -> None:
    assert result.returncode == 0, result.stderr
    assert s.running in result.stdout
    assert s.sim.counters["whoami"] == 1  # asked before anything else
    assert s.sim.counters["list"] == 1


# Calls of the sync client only: SDK 1.x's async download raises NotImplementedError;
# SDK 3.x's whoami is what its CLI asks before anything else.
SYNC_ONLY: dict[str, Call] = (
    {"whoami": (lambda s, c: c.whoami(), _whoami), "cli_list": (_cli_list, _cli_listed)}
    if GENERATION >= 2
    else {"download": (_download_v1, _downloaded)}
)


@pytest.mark.parametrize("name", [*CALLS, *SYNC_ONLY])
def test_sync_client(seeded: Seeded, name: str) -> None:
    """Each fine-tunes call of the sync client gets an answer the SDK accepts."""
    call, check = {**CALLS, **SYNC_ONLY}[name]
    check(seeded, call(seeded, seeded.sync))


@pytest.mark.parametrize("name", list(CALLS))
async def test_async_client(seeded: Seeded, name: str) -> None:
    """Each fine-tunes call of the async client gets an answer the SDK accepts."""
    call, check = CALLS[name]
    client = seeded.make_async()
    try:
        result = call(seeded, client)
        if asyncio.iscoroutine(result):
            result = await result
        if name == "content":
            result = await result.read()
        check(seeded, result)
    finally:
        if hasattr(client, "close"):
            await client.close()


def test_every_fine_tunes_operation_was_reachable(seeded: Seeded) -> None:
    """The calls above cover every operation the SDK generation has for fine-tunes."""
    resource = type(seeded.sync.fine_tuning)
    public = {name for name in vars(resource) if not name.startswith("_")}
    public -= {"with_raw_response", "with_streaming_response"}
    # Not in the public spec, so not simulated: the SDK's preview and tokenized-dataset calls.
    unspecified = {"preview", "retrieve_tokenized_dataset"}
    covered = set(CALLS) | {"download"} | unspecified
    assert public - covered == set()
