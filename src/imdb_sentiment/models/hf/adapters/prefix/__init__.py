"""Prefix Tuning for encoders (Li & Liang 2021), in the shape of a peft tuner: the settings and the
method's record are here, :mod:`.layer` holds the trainable prefixes and the attention function that
uses them, :mod:`.model` attaches them to a transformers model.

Why not peft's ``PrefixTuningConfig``: under transformers 5, peft 0.21 refuses BERT-family classifiers
("does not support past key values"): encoders no longer take a key/value cache. Here the prefixes go
in through transformers' own attention interface instead: a registered attention function prepends
each layer's learned keys and values, then runs the stock SDPA kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import nn

from imdb_sentiment.models.hf.adapters.base import (
    AdapterMethod,
    AdapterSettings,
    AdapterTarget,
    register_adapter_method,
)
from imdb_sentiment.models.hf.adapters.prefix.model import (
    ENCODER_ATTRIBUTE,
    SUPPORTED_MODEL_TYPES,
    add_prefix_tuning,
    check_prefix_support,
)

PREFIX_FILE = "prefix.safetensors"


class PrefixAdapter(AdapterSettings):
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


def apply_prefix(backbone: nn.Module, settings: PrefixAdapter, target: AdapterTarget) -> nn.Module:
    add_prefix_tuning(backbone, settings.prefix_length, settings.projection)
    return backbone  # the prefixes are a submodule of it now


def load_prefix(backbone: nn.Module, settings: PrefixAdapter, folder: Path) -> nn.Module:
    from safetensors.torch import load_file

    encoder = add_prefix_tuning(backbone, settings.prefix_length, settings.projection)
    encoder.load_state_dict(load_file(str(folder / PREFIX_FILE)))
    return backbone


def save_prefix(backbone: nn.Module, settings: PrefixAdapter, folder: Path) -> None:
    from safetensors.torch import save_file

    encoder = getattr(backbone, ENCODER_ATTRIBUTE)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(folder / PREFIX_FILE)
    )


# The prefixes sit in front of the keys / values, not the input: they take no positions.
PREFIX = register_adapter_method(
    AdapterMethod(
        settings=PrefixAdapter, apply=apply_prefix, load=load_prefix, save=save_prefix,
        check_support=check_prefix_support,
    )
)  # fmt: skip

__all__ = ["PREFIX", "SUPPORTED_MODEL_TYPES", "PrefixAdapter", "add_prefix_tuning", "check_prefix_support"]
