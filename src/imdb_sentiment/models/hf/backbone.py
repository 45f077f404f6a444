"""Building the transformers model inside an HF classifier: pretrained, from a saved run, or from scratch
(``BertConfig``), with the attention-dropout setting applied and the position limit checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.hf.adapters import apply_adapter, positions_taken
from imdb_sentiment.models.hf.hub import (
    from_pretrained_errors,
    load_pretrained_config,
    quiet_transformers,
    resolve_pretrained,
)
from imdb_sentiment.models.hf.params import HFParams

SAVED_BACKBONE_DIR = "hf_model"
TORCHAO_MISSING = "model.params.quantize_base: int8 needs torchao: pip install 'imdb-sentiment[int8]'"


def scratch_bert_config(vocab_size: int, pad_token_id: int, architecture: dict[str, int], **extra: Any) -> Any:
    """A ``BertConfig`` of the given sizes (bert-scratch and MLM pre-training from scratch)."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, **architecture, **extra)


def set_attention_dropout(config: Any, rate: float | None) -> Any:
    """Set the attention-probability dropout (its name differs between architectures)."""
    if rate is not None:
        for attribute in ("attention_probs_dropout_prob", "attention_dropout"):
            if hasattr(config, attribute):
                setattr(config, attribute, rate)
    return config


def position_limit(config: Any) -> int | None:
    """Longest input the model's position embeddings allow (None: relative positions, no limit)."""
    if not getattr(config, "position_biased_input", True):
        return None  # relative positions only (DeBERTa-v2/v3)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # positions start after the padding index
    return limit


def check_max_length(max_length: int, config: Any, virtual_tokens: int = 0) -> None:
    """P-Tuning and Prompt Tuning prepend ``virtual_tokens`` embeddings, which take positions too."""
    limit = position_limit(config)
    if limit is not None and max_length + virtual_tokens > limit:
        extra = (
            f" + {virtual_tokens} virtual tokens (model.params.adapter.virtual_tokens)" if virtual_tokens else ""
        )
        raise UserError(
            f"model.params.max_length: {max_length}{extra} exceeds the {limit} positions of this model; "
            f"lower max_length to {limit - virtual_tokens}."
        )


def virtual_token_count(params: HFParams) -> int:
    """Positions the adapter's prepended virtual tokens take (its method's record says how many)."""
    return positions_taken(params.adapter)


def architecture_config(
    params: HFParams, vocab_size: int | None = None, pad_token_id: int = 0, num_classes: int = 2
) -> Any:
    """The transformers config a new (not reloaded) backbone is built from, without loading weights.
    ``vocab_size`` is needed only for a from-scratch BERT without a checkpoint; ``num_classes`` sizes the
    checkpoint's own head (``pooling: model``)."""
    head = {"num_labels": num_classes} if params.pooling == "model" else {}
    weights = params.resolved_weights()
    checkpoint = params.resolved_checkpoint()
    if weights is not None:
        config = load_pretrained_config(weights[0], weights[1], **head)
    elif checkpoint is not None:
        config = load_pretrained_config(checkpoint, "model.params.checkpoint", **head)
    else:
        assert vocab_size is not None, "a from-scratch BERT needs its tokenizer's vocabulary size"
        config = scratch_bert_config(vocab_size, pad_token_id, params.scratch_architecture(), **head)
    return set_attention_dropout(config, params.attention_dropout)


def quantize_int8(backbone: nn.Module) -> None:
    """Int8 weight-only quantisation of the (frozen) linear layers, leaving a classifier inside the
    checkpoint trainable. torchao's tensors keep autograd to the inputs, so adapters below still train;
    peft wraps such layers with its torchao LoRA layer."""
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError:  # the optional int8 extra; validation checks for it before a run starts
        raise UserError(TORCHAO_MISSING) from None

    def frozen_linear(module: nn.Module, name: str) -> bool:
        return isinstance(module, nn.Linear) and "classifier" not in name

    quantize_(backbone, Int8WeightOnlyConfig(), filter_fn=frozen_linear)


def build_backbone(
    params: HFParams, vocab_size: int, pad_token_id: int, num_classes: int, saved: Path | None = None
) -> nn.Module:
    """The transformers model: reloaded from a saved run folder, pretrained weights, or random weights;
    with an adapter, the base model from its source plus the (new or saved) adapter. With ``pooling:
    model`` the checkpoint's head has ``num_classes`` outputs (a saved adapter restores its own copy)."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if params.pooling == "model" else AutoModel
    if saved is not None and params.adapter is None:
        with quiet_transformers():
            backbone = auto.from_pretrained(str(saved / SAVED_BACKBONE_DIR))
    else:
        config = architecture_config(params, vocab_size, pad_token_id, num_classes)
        weights = params.resolved_weights()
        if weights is None:
            backbone = auto.from_config(config)
        else:
            name, kwargs = resolve_pretrained(*weights)
            if params.pooling == "model":
                # A checkpoint fine-tuned on another number of labels gets a new head of num_classes
                # outputs (transformers refuses the shapes otherwise); a matching head loads as ever.
                kwargs["ignore_mismatched_sizes"] = True
            with from_pretrained_errors(*weights), quiet_transformers():
                backbone = auto.from_pretrained(name, config=config, **kwargs)
    check_max_length(params.max_length, backbone.config, virtual_token_count(params))
    if params.gradient_checkpointing:
        backbone.gradient_checkpointing_enable()
    if params.freeze_word_embeddings:
        backbone.get_input_embeddings().requires_grad_(False)
    if params.freeze_backbone:
        backbone.requires_grad_(False)
    if params.quantize_base == "int8":
        quantize_int8(backbone)
    if params.adapter is not None:
        tokenizer = params.resolved_tokenizer()
        backbone = apply_adapter(
            backbone, params.adapter, with_head=params.pooling == "model",
            tokenizer_source=tokenizer[0] if tokenizer else None, saved=saved,
        )  # fmt: skip
    return backbone
