"""Attaching the prefixes to a transformers encoder: one shared :class:`PrefixEncoder`, every
self-attention module told where to find it, the model switched to the prefix attention function."""

from __future__ import annotations

from torch import nn

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.hf.adapters.prefix.layer import (
    PREFIX_ATTENTION,
    PrefixEncoder,
    register_prefix_attention,
)

# Encoders whose self-attention runs through transformers' attention interface with a layer index
# (checked by the tests for BERT and RoBERTa). DistilBERT and DeBERTa compute attention their own way.
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert")
ENCODER_ATTRIBUTE = "prefix_encoder"


def self_attention_modules(backbone: nn.Module) -> list[nn.Module]:
    return [
        module for module in backbone.modules()
        if all(hasattr(module, name) for name in ("query", "key", "value", "layer_idx"))
    ]  # fmt: skip


def check_prefix_support(model_type: str) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"model.params.adapter: prefix tuning does not support {model_type!r} models (supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}); use lora, p-tuning or prompt for this checkpoint."
        )


def add_prefix_tuning(backbone: nn.Module, length: int, projection: int | None) -> PrefixEncoder:
    """Freeze ``backbone``, give it ``length`` trainable prefixes per layer (through an MLP of width
    ``projection``, or directly when None), return them (already a submodule of it)."""
    config = backbone.config
    check_prefix_support(config.model_type)
    attention = self_attention_modules(backbone)
    assert len(attention) == config.num_hidden_layers, "one self-attention module per layer expected"
    head_dim = config.hidden_size // config.num_attention_heads
    encoder = PrefixEncoder(config.num_hidden_layers, config.num_attention_heads, head_dim, length, projection)
    backbone.requires_grad_(False)
    backbone.add_module(ENCODER_ATTRIBUTE, encoder)  # trained, saved and moved to devices with the model
    for module in attention:
        # A plain attribute, not a submodule: the one encoder must not be registered once per layer.
        module.__dict__["_prefix_encoder"] = encoder
    register_prefix_attention()
    backbone.set_attn_implementation(PREFIX_ATTENTION)
    return encoder
