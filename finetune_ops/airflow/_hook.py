"""The ``together`` connection type: the key in the password, the base URL in host."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from finetune_ops._manager import JobManager

from ._compat import BaseHook


class TogetherHook(BaseHook):  # type: ignore[misc]
    """Builds a :class:`~finetune_ops.JobManager` from an Airflow connection.

    Falls back to TOGETHER_API_KEY / TOGETHER_BASE_URL when the connection has
    no password / host. The key is never returned, logged or stored on the hook.
    """

    conn_name_attr = "together_conn_id"
    default_conn_name = "together_default"
    conn_type = "together"
    hook_name = "Together"

    def __init__(self, together_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.together_conn_id = together_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login", "extra"],
            "relabeling": {"password": "API key", "host": "Base URL"},
        }

    def _settings(self) -> tuple[str | None, str | None]:
        try:
            conn = self.get_connection(self.together_conn_id)
        except Exception:  # a missing connection means: use the environment
            conn = None
        key = (conn.password if conn is not None else None) or os.environ.get("TOGETHER_API_KEY")
        host = (conn.host if conn is not None else None) or os.environ.get("TOGETHER_BASE_URL")
        return key, host

    def get_manager(self, **kwargs: Any) -> JobManager:
        """A JobManager for this connection; use it as ``async with``."""
        key, host = self._settings()
        return JobManager(api_key=key, base_url=host, **kwargs)

    async def aget_manager(self, **kwargs: Any) -> JobManager:
        """As :meth:`get_manager`, the connection read off the event loop."""
        key, host = await asyncio.to_thread(self._settings)
        return JobManager(api_key=key, base_url=host, **kwargs)
