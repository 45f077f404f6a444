"""P-Tuning (Liu et al. 2021) through peft: virtual tokens produced by a small trainable prompt encoder."""

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


class PTuningAdapter(AdapterSettings):
    """P-Tuning (Liu et al. 2021): virtual tokens produced by a small trainable prompt encoder (an MLP)."""

    method: Literal["p-tuning"] = "p-tuning"
    virtual_tokens: int = Field(20, ge=1, le=512)
    encoder_hidden_size: int = Field(256, ge=8, le=8192, description="Width of the prompt encoder.")
    encoder_type: Literal["mlp", "lstm"] = "mlp"


def apply_p_tuning(backbone: nn.Module, settings: PTuningAdapter, target: AdapterTarget) -> nn.Module:
    from peft import PromptEncoderConfig

    config = PromptEncoderConfig(
        task_type=task_type(target.with_head), num_virtual_tokens=settings.virtual_tokens,
        encoder_hidden_size=settings.encoder_hidden_size,
        encoder_reparameterization_type=settings.encoder_type.upper(),
    )  # fmt: skip
    return apply_peft_config(backbone, config)


def virtual_tokens(settings: PTuningAdapter) -> int:
    return settings.virtual_tokens  # prepended to the input: they take positions


P_TUNING = register_adapter_method(
    AdapterMethod(
        settings=PTuningAdapter, apply=apply_p_tuning, load=load_peft_adapter, save=save_peft_adapter,
        positions_taken=virtual_tokens,
    )
)  # fmt: skip
