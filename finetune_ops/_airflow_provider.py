"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "finetune-ops",
        "name": "Together fine-tuning (finetune-ops)",
        "description": "Start, wait for and cancel Together AI fine-tuning jobs.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "together",
                "hook-class-name": "finetune_ops.airflow.TogetherHook",
            }
        ],
    }
