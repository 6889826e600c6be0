"""The simulated account's jobs and how they move through their lifecycle.

Nothing runs in the background. Each job knows when its next transition is
due; a heap orders those deadlines, and every read first applies the
transitions whose time has come, stamped with the time they were due (not the
time they were noticed), so results do not depend on when anyone looked.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from ._clock import Clock, TimestampFormatter, epoch_of
from ._jobs import (
    ENTRY_EVENTS,
    LEGACY_EVENT_TYPES,
    Template,
    created_template,
    make_template,
    random_uuid,
)
from ._lifecycle import TERMINAL, Lifecycle, history, next_status
from ._models import BaseModel

_POOL_SIZE: Final = 16
_POST_TRAINING: Final = frozenset({"compressing", "uploading", "completed"})
_WITH_ESTIMATE: Final = frozenset({"running", "compressing", "uploading"})
# (time, event type, level, message, step, model path)
Event = tuple[float, str, str, str, int, str]


class Job:
    """One simulated job's moving state; its fixed settings are in `template`."""

    __slots__ = (
        "created",
        "epochs",
        "events",
        "fragment",
        "gen",
        "id",
        "next_at",
        "owner",
        "started",
        "status",
        "template",
        "updated",
    )

    def __init__(
        self, job_id: str, template: Template, created: float, owner: str | None = None
    ) -> None:
        self.id = job_id
        self.template = template
        #: The project the job belongs to; None: every caller's.
        self.owner = owner
        self.status = ""
        self.created = created
        self.updated = created
        self.started: float | None = None
        self.next_at = math.inf
        # Bumped on every reschedule, so stale heap entries can be recognised.
        self.gen = 0
        self.epochs = 0
        self.events: list[Event] = []
        # The truncated job's JSON, kept until the job changes.
        self.fragment: bytes | None = None


class JobStore:
    """All jobs of the simulated account, advanced lazily from `clock`."""

    def __init__(
        self, clock: Clock, lifecycle: Lifecycle, seed: int, *, legacy_events: bool = False
    ) -> None:
        self.clock = clock
        self._event_names: Mapping[str, str] = LEGACY_EVENT_TYPES if legacy_events else {}
        self.lifecycle = lifecycle
        self._random = random.Random(seed)
        self._stamp = TimestampFormatter(epoch_of(clock))
        self._jobs: dict[str, Job] = {}
        self._due: list[tuple[float, int, int, Job]] = []
        self._sequence = itertools.count()
        self._pool = [make_template(self._random) for _ in range(_POOL_SIZE)]

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs)

    # -- time ---------------------------------------------------------------

    def advance(self) -> float:
        """Apply every transition that is due by now; return now."""
        now = self.clock.now()
        due = self._due
        while due and due[0][0] <= now:
            at, _, gen, job = heapq.heappop(due)
            if gen != job.gen:
                continue  # rescheduled since, e.g. cancelled
            following = next_status(job.status)
            if following is not None:
                self._enter(job, following, at)
        return now

    def _enter(self, job: Job, status: str, at: float) -> None:
        job.status = status
        job.updated = at
        job.fragment = None
        if status == "running" and job.started is None:
            job.started = at
        if status == "compressing":
            self._record_epochs(job, at)
        self._record(job, status, at)
        self._schedule(job, at)

    def _schedule(self, job: Job, at: float) -> None:
        job.gen += 1
        duration = self.lifecycle.duration(job.status)
        if next_status(job.status) is None or math.isinf(duration):
            job.next_at = math.inf
            return
        job.next_at = at + duration
        heapq.heappush(self._due, (job.next_at, next(self._sequence), job.gen, job))

    def _record(self, job: Job, status: str, at: float) -> None:
        template = job.template
        trained = status in _POST_TRAINING
        step = template.total_steps if trained else 0
        for kind, level, message in ENTRY_EVENTS.get(status, ()):
            path = self.model_path(job) if kind == "job_complete" else ""
            job.events.append((at, kind, level, message, step, path))

    def _record_epochs(self, job: Job, at: float) -> None:
        # Epoch ends are spread evenly over the time the job spent running.
        start = job.started if job.started is not None else at
        total = job.template.n_epochs
        steps = job.template.total_steps
        for epoch in range(1, total + 1):
            when = start + (at - start) * epoch / total
            message = f"Epoch {epoch}/{total} complete"
            job.events.append((when, "epoch_complete", "info", message, steps * epoch // total, ""))
        job.epochs = total

    # -- creating jobs ------------------------------------------------------

    def _new_id(self) -> str:
        while True:
            job_id = "ft-" + random_uuid(self._random)
            if job_id not in self._jobs:
                return job_id

    def create(self, settings: Mapping[str, Any], base: BaseModel, owner: str | None = None) -> Job:
        """A new pending job from a create request's checked, complete settings."""
        now = self.advance()
        template = created_template(self._random, settings, base)
        job = Job(self._new_id(), template, now, owner)
        self._jobs[job.id] = job
        self._enter(job, "pending", now)
        return job

    def add(
        self,
        status: str,
        fields: Mapping[str, Any] | None = None,
        *,
        job_id: str | None = None,
        owner: str | None = None,
    ) -> Job:
        """A job that is already in `status`, with the events that led there."""
        if job_id is not None and job_id in self._jobs:
            raise ValueError(f"a job with id {job_id!r} already exists")
        now = self.advance()
        template = self._pool[self._random.randrange(_POOL_SIZE)]
        if fields:
            template = template.with_overrides(fields)
        job = Job(self._new_id() if job_id is None else job_id, template, now, owner)
        self._jobs[job.id] = job
        past = history(status)
        for step in past[:-1]:
            if step == "running":
                job.started = now
            elif step == "compressing":
                self._record_epochs(job, now)
            self._record(job, step, now)
        job.status = ""
        self._enter(job, status, now)
        return job

    def add_many(self, count: int, statuses: Sequence[str], owner: str | None = None) -> list[str]:
        """`count` jobs whose statuses cycle through `statuses`."""
        cycle = itertools.cycle(statuses)
        return [self.add(next(cycle), owner=owner).id for _ in range(count)]

    # -- reading and changing jobs ------------------------------------------

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, brought up to date, or None if there is no such id.

        With `owner`, a job of another project is None too: to its caller it
        does not exist.
        """
        self.advance()
        job = self._jobs.get(job_id)
        if job is None or not visible(job, owner):
            return None
        return job

    def delete(self, job: Job) -> None:
        """Forget `job`: it is gone from list, retrieve and everything else."""
        job.gen += 1  # its pending transition, if any, no longer applies
        del self._jobs[job.id]

    def cancel(self, job: Job) -> bool:
        """Ask `job` to stop; False if it has already finished."""
        if job.status in TERMINAL:
            return False
        if job.status != "cancel_requested":
            now = self.clock.now()
            job.epochs = self._epochs(job, now)
            self._enter(job, "cancel_requested", now)
            self.advance()  # a zero cancel_delay cancels at once
        return True

    def set_status(self, job: Job, status: str) -> None:
        """Move `job` to `status` now, as if the service had done it."""
        now = self.advance()
        if status == "cancel_requested":
            job.epochs = self._epochs(job, now)
        self._enter(job, status, now)
        self.advance()

    # -- rendering ------------------------------------------------------------

    def model_path(self, job: Job) -> str:
        """Where the simulated service would keep the job's finished model."""
        return f"s3://finetune-sim/models/{job.id}/final"

    def truncated_json(self, job: Job) -> bytes:
        """The truncated job as JSON (cached until the job changes)."""
        fragment = job.fragment
        if fragment is None:
            stamp = self._stamp
            template = job.template
            started = "" if job.started is None else f',"started_at":"{stamp(job.started)}"'
            rest = f",{template.truncated_json}" if template.truncated_json else ""
            fragment = (
                f'{{"id":"{job.id}","status":{json.dumps(job.status)},'
                f'"created_at":"{stamp(job.created)}","updated_at":"{stamp(job.updated)}"'
                f"{started},"
                f'"model_output_name":{json.dumps(template.output_name(job.id))}{rest}}}'
            ).encode()
            job.fragment = fragment
        return fragment

    def created_json(self, job: Job) -> bytes:
        """The truncated job as create answers it: with its adapter's name.

        Only create carries `adapter_output_name` (SDK 3.x requires it there);
        lists stay as lean as the spec's truncated job.
        """
        created = json.loads(self.truncated_json(job))
        created["adapter_output_name"] = job.template.adapter_name(job.id)
        return json.dumps(created).encode()

    def list_json(self, owner: str | None = None) -> bytes:
        """Every job (of `owner`'s project, if given), truncated, as the list endpoint's JSON."""
        self.advance()
        render = self.truncated_json
        jobs: Iterable[Job] = self._jobs.values()
        if owner is not None:
            jobs = (job for job in jobs if visible(job, owner))
        parts = [render(job) for job in jobs]
        if not parts:
            return b'{"data":[]}'
        # One join, wrapper included: the body can be ~100 MB for 100k jobs, and
        # every extra concatenation is another copy of it.
        parts[0] = b'{"data":[' + parts[0]
        parts[-1] += b"]}"
        return b",".join(parts)

    def full(self, job: Job) -> dict[str, Any]:
        """The full job object; it shares nested values with the template, do not mutate."""
        now = self.clock.now()
        template = job.template
        stamp = self._stamp
        out: dict[str, Any] = {
            "id": job.id,
            "job_id": job.id,
            "status": job.status,
            "created_at": stamp(job.created),
            "updated_at": stamp(job.updated),
        }
        if job.started is not None:
            out["started_at"] = stamp(job.started)
        out["model_output_name"] = template.output_name(job.id)
        out["adapter_output_name"] = template.adapter_name(job.id)
        if job.status == "completed":
            out["model_output_path"] = self.model_path(job)
        out.update(template.truncated)
        out.update(template.full_extra)
        out["epochs_completed"] = self._epochs(job, now)
        out["queue_depth"] = 1 if job.status == "queued" else 0
        out["progress"] = self._progress(job, now)
        out["events"] = self.events(job)
        return out

    def events(self, job: Job) -> list[dict[str, Any]]:
        """The job's events, oldest first, in the spec's event shape."""
        template = job.template
        stamp = self._stamp
        names = self._event_names
        return [
            {
                "object": "fine-tune-event",
                "created_at": stamp(at),
                "level": level,
                "message": message,
                "type": names.get(kind, kind),
                "param_count": template.param_count,
                "token_count": template.token_count,
                "total_steps": template.total_steps,
                "wandb_url": template.wandb_url,
                "step": step,
                "checkpoint_path": "",
                "model_path": path,
                "training_offset": 0,
                "hash": "",
            }
            for at, kind, level, message, step, path in sorted(job.events, key=_event_time)
        ]

    def trained(self, job: Job) -> float:
        """The share of its training (0 to 1) the job has done by now."""
        now = self.clock.now()
        if job.status in _POST_TRAINING:
            return 1.0
        if job.status == "running" and job.started is not None:
            duration = self.lifecycle.running
            if math.isinf(duration) or duration <= 0:
                return 0.0
            return min(1.0, (now - job.started) / duration)
        return job.epochs / job.template.n_epochs

    def checkpoints(self, job: Job) -> list[dict[str, Any]]:
        """The job's saved checkpoints, oldest first, in the spec's checkpoint shape.

        `n_checkpoints` are saved evenly through training, the last of them
        being the final model, which exists once the job has completed.
        """
        template = job.template
        count = max(1, _setting(template, "n_checkpoints", 1))
        done = self.trained(job)
        started = job.started if job.started is not None else job.created
        out = []
        for index in range(1, count + 1):
            share = index / count
            final = index == count
            if share > done or (final and job.status != "completed"):
                break
            step = math.ceil(template.total_steps * share)
            out.append(
                {
                    "step": step,
                    "created_at": self._stamp(started + share * self.lifecycle.running),
                    "path": self.model_path(job) if final else self.checkpoint_path(job, step),
                    "checkpoint_type": "Final" if final else f"Intermediate (step {step})",
                }
            )
        return out

    def checkpoint_path(self, job: Job, step: int) -> str:
        """Where the simulated service keeps the job's checkpoint at `step`."""
        return f"s3://finetune-sim/checkpoints/{job.id}/step-{step}"

    def metrics(self, job: Job, first_step: int, last_step: int) -> list[dict[str, float]]:
        """Training loss and learning rate at up to 50 steps trained so far, in order."""
        template = job.template
        reached = math.floor(template.total_steps * self.trained(job))
        if reached < 1:
            return []
        stride = max(1, math.ceil(template.total_steps / 50))
        rate = float(template.truncated.get("learning_rate") or 1e-5)
        out = []
        for step in range(stride, reached + 1, stride):
            if first_step <= step <= last_step:
                progress = step / template.total_steps
                out.append(
                    {
                        "train/loss": round(2.0 * math.exp(-2.5 * progress) + 0.3, 6),
                        "train/learning_rate": rate * (1 - progress),
                        "train/global_step": float(step),
                    }
                )
        return out

    def _epochs(self, job: Job, now: float) -> int:
        total = job.template.n_epochs
        if job.status in _POST_TRAINING:
            return total
        if job.status == "running" and job.started is not None:
            duration = self.lifecycle.running
            if math.isinf(duration) or duration <= 0:
                return 0
            return min(total, int((now - job.started) / duration * total))
        return job.epochs

    def _progress(self, job: Job, now: float) -> dict[str, Any]:
        if job.status in _WITH_ESTIMATE and not math.isinf(job.next_at):
            left = job.next_at - now + self.lifecycle.remaining_after(job.status)
            if not math.isinf(left):
                return {"estimate_available": True, "seconds_remaining": max(0, math.ceil(left))}
        if job.status == "completed":
            return {"estimate_available": True, "seconds_remaining": 0}
        return {"estimate_available": False, "seconds_remaining": 0}


def _setting(template: Template, key: str, default: int) -> int:
    value = template.truncated.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def visible(job: Job, owner: str | None) -> bool:
    """Whether a caller of project `owner` (None: any caller) sees `job`."""
    return owner is None or job.owner is None or job.owner == owner


def _event_time(event: Event) -> float:
    return event[0]
