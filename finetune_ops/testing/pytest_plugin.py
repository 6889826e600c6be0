"""pytest plugin: a served `Simulator` per test.

It needs pytest and pytest-asyncio (`pip install 'finetune-ops[testing]'`).
Enable it in your root conftest.py::

    pytest_plugins = ["finetune_ops.testing.pytest_plugin"]

run pytest-asyncio in auto mode (in pyproject.toml, `[tool.pytest.ini_options]`
`asyncio_mode = "auto"`; in strict mode, mark each test `@pytest.mark.asyncio`)
and take the `finetune_simulator` fixture in an async test. It is a
`Simulator` already serving on a loopback port, on a `ManualClock`, with its
URL in `finetune_simulator.base_url`::

    async def test_cancel(finetune_simulator):
        job_id = finetune_simulator.add_job("running")
        ...  # point your client at finetune_simulator.base_url
        finetune_simulator.advance(5)

To configure it, override `finetune_simulator_options` (a dict of `Simulator`
keyword arguments) in a conftest or a test module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ._clock import ManualClock
from ._simulator import Simulator


@pytest.fixture
def finetune_simulator_options() -> dict[str, Any]:
    """Keyword arguments for the `finetune_simulator` fixture's `Simulator`."""
    return {}


@pytest_asyncio.fixture
async def finetune_simulator(
    finetune_simulator_options: dict[str, Any],
) -> AsyncIterator[Simulator]:
    """A `Simulator` serving on 127.0.0.1 for one test; its URL is in `.base_url`."""
    options: dict[str, Any] = {"clock": ManualClock(), **finetune_simulator_options}
    simulator = Simulator(**options)
    async with simulator.serve():
        yield simulator
