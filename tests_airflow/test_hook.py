"""TogetherHook: the key from the connection's password, else from the environment."""

from __future__ import annotations

import pytest
from conftest import CONN_ENV, KEY

from finetune_ops.airflow import TogetherHook
from finetune_ops.testing import Simulator


async def test_the_connection_gives_key_and_url(sim: Simulator) -> None:
    async with await TogetherHook().aget_manager() as manager:
        assert manager.base_url == sim.base_url
        assert await manager.list() == []
    assert KEY not in repr(TogetherHook().__dict__)


async def test_the_environment_is_the_fallback(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONN_ENV)
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("TOGETHER_BASE_URL", str(sim.base_url))
    async with await TogetherHook().aget_manager() as manager:
        assert await manager.list() == []


def test_the_form_names_its_fields() -> None:
    behaviour = TogetherHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"password": "API key", "host": "Base URL"}
