"""Parameter-efficient fine-tuning of the HF encoders: LoRA, P-Tuning and Prompt Tuning through ``peft``,
Prefix Tuning through our own small tuner (:mod:`.prefix`). The base model stays frozen; a run saves
only the adapter (plus the classifier head) and a pointer to its base model.

One mapping joins them: ``method`` in the ``adapter:`` settings picks how it is applied, saved and
(LoRA only) merged into the base weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.hf.adapters.config import (
    PROMPT_METHODS,
    AdapterConfig,
    LoraAdapter,
    PrefixAdapter,
    PromptAdapter,
    PTuningAdapter,
)

ADAPTER_DIR = "adapter"
PREFIX_FILE = "prefix.safetensors"
BASE_FILE = "base_model.json"
# peft's own default targets cover BERT, RoBERTa, ELECTRA and DeBERTa-v2; not DistilBERT.
EXTRA_LORA_TARGETS = {"distilbert": ["q_lin", "v_lin"]}

__all__ = ["ADAPTER_DIR", "PROMPT_METHODS", "AdapterConfig", "apply_adapter", "merge_adapter", "save_adapter"]


def peft_config(settings: AdapterConfig, model_type: str, with_head: bool, tokenizer_source: str | None) -> Any:
    from peft import LoraConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    task = TaskType.SEQ_CLS if with_head else TaskType.FEATURE_EXTRACTION
    if isinstance(settings, LoraAdapter):
        return LoraConfig(
            task_type=task, r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
            target_modules=settings.target_modules or EXTRA_LORA_TARGETS.get(model_type),
        )  # fmt: skip
    if isinstance(settings, PTuningAdapter):
        return PromptEncoderConfig(
            task_type=task, num_virtual_tokens=settings.virtual_tokens,
            encoder_hidden_size=settings.encoder_hidden_size,
            encoder_reparameterization_type=settings.encoder_type.upper(),
        )  # fmt: skip
    assert isinstance(settings, PromptAdapter)
    from_text = settings.init_text is not None and tokenizer_source is not None
    return PromptTuningConfig(
        task_type=task, num_virtual_tokens=settings.virtual_tokens,
        prompt_tuning_init="TEXT" if from_text else "RANDOM",
        prompt_tuning_init_text=settings.init_text if from_text else None,
        tokenizer_name_or_path=tokenizer_source if from_text else None,
    )  # fmt: skip


def apply_adapter(
    backbone: nn.Module,
    settings: AdapterConfig,
    *,
    with_head: bool,
    tokenizer_source: str | None = None,
    saved: Path | None = None,
) -> nn.Module:
    """Freeze ``backbone`` and add the adapter: new (to train) or the one saved in ``saved``."""
    if isinstance(settings, PrefixAdapter):
        from imdb_sentiment.models.hf.adapters.prefix import add_prefix_tuning

        encoder = add_prefix_tuning(backbone, settings)
        if saved is not None:
            from safetensors.torch import load_file

            encoder.load_state_dict(load_file(str(saved / ADAPTER_DIR / PREFIX_FILE)))
        return backbone
    from peft import PeftModel, get_peft_model

    # peft reads transformers' deprecated `is_gradient_checkpointing` (transformers >= 5.2x warns on
    # every run); the warning is addressed to peft, not to our users.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if saved is not None:
            return PeftModel.from_pretrained(backbone, str(saved / ADAPTER_DIR))
        return get_peft_model(
            backbone, peft_config(settings, backbone.config.model_type, with_head, tokenizer_source)
        )


def save_adapter(backbone: nn.Module, settings: AdapterConfig, directory: Path, base: tuple[str, str]) -> None:
    """Only the adapter's weights, and which base model they belong to."""
    folder = directory / ADAPTER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(settings, PrefixAdapter):
        from safetensors.torch import save_file

        from imdb_sentiment.models.hf.adapters.prefix.model import ENCODER_ATTRIBUTE

        encoder = getattr(backbone, ENCODER_ATTRIBUTE)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(folder / PREFIX_FILE)
        )
    else:
        backbone.save_pretrained(str(folder))
    (folder / BASE_FILE).write_text(json.dumps({"source": base[0], "field": base[1], "method": settings.method}))


def merge_adapter(backbone: nn.Module, settings: AdapterConfig) -> nn.Module:
    """The plain transformers model with LoRA folded into its weights (no extra latency)."""
    if not isinstance(settings, LoraAdapter):
        raise UserError(
            f"only LoRA can be merged into the base weights; {settings.method} adds tokens or prefixes at "
            "run time. Serve the run as it is."
        )
    return backbone.merge_and_unload()


def adapter_size_mb(directory: Path) -> float:
    folder = directory / ADAPTER_DIR
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20
