"""Settings of the parameter-efficient methods: the ``adapter:`` section of the hf / minilm params,
a tagged union keyed on ``method``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _AdapterBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraAdapter(_AdapterBase):
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


class PTuningAdapter(_AdapterBase):
    """P-Tuning (Liu et al. 2021): virtual tokens produced by a small trainable prompt encoder (an MLP)."""

    method: Literal["p-tuning"] = "p-tuning"
    virtual_tokens: int = Field(20, ge=1, le=512)
    encoder_hidden_size: int = Field(256, ge=8, le=8192, description="Width of the prompt encoder.")
    encoder_type: Literal["mlp", "lstm"] = "mlp"


class PrefixAdapter(_AdapterBase):
    """Prefix Tuning (Li & Liang 2021): trainable key / value vectors prepended in every attention layer."""

    method: Literal["prefix"] = "prefix"
    prefix_length: int = Field(20, ge=1, le=512)
    projection: int | None = Field(
        512,
        ge=8,
        le=8192,
        description="Reparameterise the prefixes through an MLP of this width (stabler training, as in the "
        "paper); null: train the key / value vectors directly.",
    )


class PromptAdapter(_AdapterBase):
    """Prompt Tuning (Lester et al. 2021): trainable input embeddings of virtual tokens, nothing else."""

    method: Literal["prompt"] = "prompt"
    virtual_tokens: int = Field(20, ge=1, le=512)
    init_text: str | None = Field(
        "Classify the sentiment of this movie review as positive or negative:",
        description="Initialise the virtual tokens from this text's token embeddings; null: random.",
    )


AdapterConfig = Annotated[
    LoraAdapter | PTuningAdapter | PrefixAdapter | PromptAdapter, Field(discriminator="method")
]
PROMPT_METHODS = ("p-tuning", "prompt")  # prepend virtual tokens to the input
