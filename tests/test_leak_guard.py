"""The leak guard of tests/conftest.py fails the tests that leak, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

LEAKY_TESTS = """
import asyncio
import gc

import aiohttp


async def test_clean():
    await asyncio.sleep(0)


async def test_task_left_running():
    asyncio.get_running_loop().create_task(asyncio.sleep(3600))


async def test_pending_task_dropped_in_a_cycle():
    never = asyncio.get_running_loop().create_future()

    async def waits():
        await never

    asyncio.get_running_loop().create_task(waits())
    await asyncio.sleep(0)
    gc.collect()  # a collection during the test moves the cycle to an older generation


async def test_task_exception_never_retrieved():
    async def fails():
        raise RuntimeError("nobody looks")

    task = asyncio.get_running_loop().create_task(fails())
    await asyncio.sleep(0)
    del task


async def test_session_never_closed():
    aiohttp.ClientSession()
"""


def test_guard_fails_each_kind_of_leak(pytester: pytest.Pytester) -> None:
    """A task left running, a pending task dropped, an unread exception, an unclosed session."""
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("errors"), outcomes.get("failed")) == (3, 1), outcomes
    result.stdout.fnmatch_lines_random(
        [
            "E * AssertionError: tasks outlived the test: *Task*sleep()*",
            "E * the event loop reported errors: *Task was destroyed but it is pending!*",
            "E * the event loop reported errors: *Task exception was never retrieved*",
            "E * ResourceWarning: Unclosed client session*",
            "FAILED test_leaky.py::test_session_never_closed*",
        ]
    )
    assert "test_clean" not in result.stdout.str()
