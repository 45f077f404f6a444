"""Prompt Tuning (Lester et al. 2021) through peft: trainable input embeddings of virtual tokens."""

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


class PromptAdapter(AdapterSettings):
    """Prompt Tuning (Lester et al. 2021): trainable input embeddings of virtual tokens, nothing else."""

    method: Literal["prompt"] = "prompt"
    virtual_tokens: int = Field(20, ge=1, le=512)
    init_text: str | None = Field(
        "Classify the sentiment of this movie review as positive or negative:",
        description="Initialise the virtual tokens from this text's token embeddings; null: random.",
    )


def apply_prompt_tuning(backbone: nn.Module, settings: PromptAdapter, target: AdapterTarget) -> nn.Module:
    from peft import PromptTuningConfig

    from_text = settings.init_text is not None and target.tokenizer_source is not None
    config = PromptTuningConfig(
        task_type=task_type(target.with_head), num_virtual_tokens=settings.virtual_tokens,
        prompt_tuning_init="TEXT" if from_text else "RANDOM",
        prompt_tuning_init_text=settings.init_text if from_text else None,
        tokenizer_name_or_path=target.tokenizer_source if from_text else None,
    )  # fmt: skip
    return apply_peft_config(backbone, config)


def virtual_tokens(settings: PromptAdapter) -> int:
    return settings.virtual_tokens  # prepended to the input: they take positions


PROMPT = register_adapter_method(
    AdapterMethod(
        settings=PromptAdapter, apply=apply_prompt_tuning, load=load_peft_adapter, save=save_peft_adapter,
        positions_taken=virtual_tokens,
    )
)  # fmt: skip
