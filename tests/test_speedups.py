"""The fast paths: a brief cancel record while a batch waits, and the optional speedups extra.

The extra's tests run only where msgspec is installed; what they check is that
the fast reader gives what the standard one gives, and refuses (SlowPath)
whatever the standard one would turn into an error.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from finetune_ops import JobManager, JobStatus, PollPolicy
from finetune_ops import _speedups as speedups
from finetune_ops._api import _BRIEF_JOB, _JOB, _decode
from finetune_ops._converter import STRUCTURE_ERRORS, brief_job, structure_job
from finetune_ops._errors import InvalidResponseError
from finetune_ops.testing import Lifecycle, Simulator

FAST_POLL = PollPolicy(interval=0.01, growth=1.0, jitter=0)

ACTIVE: dict[str, Any] = {
    "id": "ft-1",
    "status": "cancel_requested",
    "updated_at": "2026-01-02T03:04:05Z",
    "model": "some/model",
    "training_type": {"type": "Lora", "lora_r": 8},
}


def test_brief_job_keeps_id_status_and_updated_at() -> None:
    job = brief_job(ACTIVE)
    assert (job.id, job.status, job.model, job.training_type) == (
        "ft-1",
        "cancel_requested",
        None,
        None,
    )
    assert job.updated_at == structure_job(ACTIVE).updated_at


@pytest.mark.parametrize(
    "data",
    [
        {**ACTIVE, "status": "cancelled"},  # terminal: what the caller gets, in full
        {**ACTIVE, "status": "paused"},  # unknown status: the full path decides
        {**ACTIVE, "updated_at": 12},  # a field that does not fit: named in unparsed_fields
    ],
)
def test_brief_job_is_the_full_record_otherwise(data: dict[str, Any]) -> None:
    assert brief_job(data) == structure_job(data)


@pytest.mark.parametrize("data", [[], "x", {"status": "running"}, {"id": 1, "status": "running"}])
def test_brief_job_fails_as_the_full_path_does(data: object) -> None:
    with pytest.raises(STRUCTURE_ERRORS) as full:
        structure_job(data)
    with pytest.raises(type(full.value)):
        brief_job(data)


async def test_waited_results_carry_the_full_record() -> None:
    """The brief cancel record is replaced: a waited result holds the list's record."""
    sim = Simulator(lifecycle=Lifecycle(cancel_delay=0.02))
    async with sim.serve() as url, JobManager(base_url=url, poll=FAST_POLL) as jobs:
        ids = [sim.add_job("running") for _ in range(3)]
        waited = await jobs.cancel_many(ids, wait=True, timeout=30)
        one = sim.add_job("running")
        unwaited = await jobs.cancel_many([one], wait=False)
    for result in waited:
        assert result.ok
        assert result.job is not None
        assert result.job.status == JobStatus.CANCELLED
        assert result.job.model is not None
    (result,) = unwaited
    assert result.job is not None
    assert result.job.status == JobStatus.CANCEL_REQUESTED
    assert result.job.model is not None  # not waited for: the cancel answer in full


# -- the speedups extra ------------------------------------------------------------------


def _fast() -> None:
    pytest.importorskip("msgspec")
    if speedups.DISABLED:
        pytest.skip("the extra is disabled (FINETUNE_OPS_NO_SPEEDUPS)")


def _read(body: bytes, reader: Any) -> object:
    """What the HTTP layer makes of a 2xx body: a value, or its error's text."""
    try:
        return _decode(bytearray(body), reader, 200, {}, "GET", "https://x/fine-tunes")
    except InvalidResponseError as error:
        return f"{error} | {error.excerpt} | {error.transient}"


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(ACTIVE).encode(),
        json.dumps({**ACTIVE, "status": "cancelled", "total_price": 10**30}).encode(),
        b'{"id": "ft-1", "status": "running", "learning_rate": NaN}',
        b"",
        b"   ",
        b"\xff\xfe",
        b'{"id": "ft-1"',
        b"[1, 2]",
        b'{"id": 3, "status": "running"}',
        b"[" * 5000 + b"]" * 5000,
    ],
)
@pytest.mark.parametrize("reader", [_JOB, _BRIEF_JOB], ids=["full", "brief"])
def test_single_bodies_read_the_same_with_the_extra(body: bytes, reader: Any) -> None:
    """Whatever the fast reader makes of a body, the standard one makes too (or the same error)."""
    _fast()
    assert repr(_read(body, reader)) == repr(_read(body, type(reader)(reader.loads)))
