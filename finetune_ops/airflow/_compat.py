"""Imports that moved between Airflow 2.10 and 3.x, in one place."""

from __future__ import annotations

try:  # Airflow 3
    from airflow.sdk import BaseHook, BaseOperator
except ImportError:  # Airflow 2
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,unused-ignore]
    from airflow.models import BaseOperator  # type: ignore[no-redef,unused-ignore]

from airflow.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = ["AirflowException", "BaseHook", "BaseOperator", "BaseTrigger", "TriggerEvent"]
