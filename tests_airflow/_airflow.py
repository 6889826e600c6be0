"""Running an operator as Airflow would without a scheduler: execute, defer, trigger, resume."""

from __future__ import annotations

import asyncio
from typing import Any

try:  # Airflow 3
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 2
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,unused-ignore]

from finetune_ops.airflow import FineTuneJobsTrigger

__all__ = ["TaskDeferred", "deferred", "run_trigger"]


def deferred(operator: Any, context: dict[str, Any]) -> TaskDeferred:
    """``execute``, which must defer; the TaskDeferred it raised."""
    try:
        operator.execute(context)
    except TaskDeferred as exc:
        return exc
    raise AssertionError("execute did not defer")


def run_trigger(trigger: FineTuneJobsTrigger) -> dict[str, Any]:
    """The trigger rebuilt from its kwargs, as the triggerer does, run to its one event."""
    _, kwargs = trigger.serialize()

    async def first() -> dict[str, Any]:
        async for event in FineTuneJobsTrigger(**kwargs).run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("the trigger yielded no event")

    return asyncio.run(first())
