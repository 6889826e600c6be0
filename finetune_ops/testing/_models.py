"""The base models the simulated service fine-tunes, and the limits it states for each.

`GET /fine-tunes/models/supported` lists them, `GET /fine-tunes/models/limits`
answers for one, and a create request is checked against them: an unknown
model is refused, and `batch_size: "max"` (the spec's default) becomes the
largest batch the model allows for the chosen training type and method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["MODELS", "BaseModel", "find_model"]

_TARGET_MODULES: Final = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@attrs.frozen
class BaseModel:
    """One fine-tunable model and its limits."""

    name: str
    param_count: int
    max_seq_length: int = 8192
    lora_max_batch: int = 64
    full_max_batch: int | None = 32
    max_rank: int = 64

    @property
    def price_per_million_tokens(self) -> float:
        """US dollars per million trained tokens: larger models cost more."""
        return 0.48 if self.param_count < 10_000_000_000 else 1.2

    def max_batch_size(self, training_type: Mapping[str, Any], method: str) -> int:
        """What `batch_size: "max"` means for this model, training type and method."""
        lora = training_type.get("type") == "Lora"
        full = self.full_max_batch
        largest = self.lora_max_batch if lora or full is None else full
        return largest // 2 if method == "dpo" else largest

    def max_seq_length_for(self, method: str) -> int:
        """The longest sequence the model trains on with `method` (DPO pairs: half)."""
        return self.max_seq_length // 2 if method == "dpo" else self.max_seq_length

    def limits(self) -> dict[str, Any]:
        """The model's limits in the shape of the spec's FineTuneModelLimits.

        The official SDKs also read a few keys the spec does not list (the
        default LoRA rank, sequence length bounds, checkpoint count); they are
        included so that an SDK's create works.
        """
        lora = {
            "max_batch_size": self.lora_max_batch,
            "max_batch_size_dpo": self.lora_max_batch // 2,
            "min_batch_size": 1,
            "max_rank": self.max_rank,
            "default_rank": min(16, self.max_rank),
            "target_modules": list(_TARGET_MODULES),
        }
        out: dict[str, Any] = {
            "model_name": self.name,
            "lora_training": lora,
            "max_num_epochs": 20,
            "max_num_evals": 100,
            "max_num_checkpoints": 20,
            "max_learning_rate": 1.0,
            "min_learning_rate": 1e-8,
            "max_seq_length_sft": self.max_seq_length_for("sft"),
            "max_seq_length_dpo": self.max_seq_length_for("dpo"),
            "min_max_seq_length": 512,
            "default_gradient_accumulation_steps": 1,
            "supports_full_training": self.full_max_batch is not None,
            "supports_vision": False,
            "supports_tools": True,
            "supports_reasoning": False,
            "merge_output_lora": True,
        }
        if self.full_max_batch is not None:
            out["full_training"] = {
                "max_batch_size": self.full_max_batch,
                "max_batch_size_dpo": self.full_max_batch // 2,
                "min_batch_size": 1,
            }
        return out


#: The supported base models, a few of different sizes.
MODELS: Final[tuple[BaseModel, ...]] = (
    BaseModel("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", 8_030_261_248),
    BaseModel("meta-llama/Llama-3.2-3B-Instruct", 3_212_749_824, lora_max_batch=128),
    BaseModel("Qwen/Qwen2.5-7B-Instruct", 7_615_616_512, max_seq_length=16384),
    BaseModel("Qwen/Qwen2.5-14B-Instruct", 14_770_033_664, full_max_batch=16),
    BaseModel("mistralai/Mistral-7B-Instruct-v0.2", 7_241_732_096, max_seq_length=4096),
    BaseModel("google/gemma-2-9b-it", 9_241_705_984, full_max_batch=None),
)
_BY_NAME: Final = {model.name: model for model in MODELS}


def find_model(name: str) -> BaseModel | None:
    """The supported model called `name`, or None."""
    return _BY_NAME.get(name)
