"""Airflow integration (work in progress): the Together connection type.

Install with the ``airflow`` extra.
"""

from ._hook import TogetherHook
from ._trigger import FineTuneJobsTrigger

__all__ = ["FineTuneJobsTrigger", "TogetherHook"]
