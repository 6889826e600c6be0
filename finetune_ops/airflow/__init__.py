"""Airflow integration: start, wait for and cancel Together fine-tuning jobs from DAGs.

Install with the ``airflow`` extra. See the "Airflow" guide in the docs.
"""

from ._cancel_operator import CancelFineTuneJobsOperator
from ._finetune_operator import FineTuneOperator
from ._hook import TogetherHook
from ._trigger import FineTuneJobsTrigger

__all__ = [
    "CancelFineTuneJobsOperator",
    "FineTuneJobsTrigger",
    "FineTuneOperator",
    "TogetherHook",
]
