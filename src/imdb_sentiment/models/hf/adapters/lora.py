"""LoRA (Hu et al. 2021) through peft: trainable low-rank updates W + (alpha / r) B A of the attention
projections; the only method here that merges into the base weights."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from imdb_sentiment.models.hf.adapters.base import (
    AdapterMethod,
    AdapterSettings,
    AdapterTarget,
    register_adapter_method,
)
from imdb_sentiment.models.hf.adapters.via_peft import (
    apply_peft_config,
    load_peft_adapter,
    save_peft_adapter,
    task_type,
)

# peft's own default targets cover BERT, RoBERTa, ELECTRA and DeBERTa-v2; not DistilBERT.
EXTRA_LORA_TARGETS = {"distilbert": ["q_lin", "v_lin"]}


class LoraAdapter(AdapterSettings):
    """LoRA (Hu et al. 2021): trainable low-rank updates W + (alpha / r) B A of the attention projections."""

    method: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1, le=256, description="r: rank of the update.")
    alpha: float = Field(16.0, gt=0.0, le=1024.0, description="Scaling numerator: the update is (alpha / r) BA.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the LoRA branch's input.")
    target_modules: list[str] | None = Field(
        None,
        description="Linear layers to adapt; default per architecture: query / value projections "
        "(query, value for BERT / RoBERTa / ELECTRA; q_lin, v_lin for DistilBERT; query_proj, value_proj "
        "for DeBERTa-v2/v3).",
    )


def apply_lora(backbone: nn.Module, settings: LoraAdapter, target: AdapterTarget) -> nn.Module:
    from peft import LoraConfig

    config = LoraConfig(
        task_type=task_type(target.with_head), r=settings.rank, lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules or EXTRA_LORA_TARGETS.get(target.model_type),
    )  # fmt: skip
    return apply_peft_config(backbone, config)


def merge_lora(backbone: nn.Module) -> nn.Module:
    return backbone.merge_and_unload()


LORA = register_adapter_method(
    AdapterMethod(
        settings=LoraAdapter, apply=apply_lora, load=load_peft_adapter, save=save_peft_adapter, merge=merge_lora,
        trains_checkpoint_head=True, for_causal_lm=True,
    )
)  # fmt: skip
