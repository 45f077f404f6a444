"""Parameter-efficient fine-tuning of the HF encoders (and llm-sft's causal LMs): the base model stays
frozen; a run saves only the adapter (plus the classifier head) and a pointer to its base model.

Each method is one module that registers one :class:`~.base.AdapterMethod` record (settings, apply,
save / load, merge or none, positions taken, support check): :mod:`.lora`, :mod:`.p_tuning` and
:mod:`.prompt` through ``peft``, :mod:`.prefix` our own tuner. The functions below only ask the record.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from torch import nn

# One line per built-in method: importing the module registers it.
import imdb_sentiment.models.hf.adapters.lora
import imdb_sentiment.models.hf.adapters.p_tuning
import imdb_sentiment.models.hf.adapters.prefix
import imdb_sentiment.models.hf.adapters.prompt  # noqa: F401
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.hf.adapters.base import (
    ADAPTER_METHODS,
    AdapterConfig,
    AdapterMethod,
    AdapterSettings,
    AdapterTarget,
    method_of,
    register_adapter_method,
)

ADAPTER_DIR = "adapter"
BASE_FILE = "base_model.json"

__all__ = [
    "ADAPTER_DIR", "ADAPTER_METHODS", "AdapterConfig", "AdapterMethod", "AdapterSettings", "AdapterTarget",
    "adapter_size_mb", "apply_adapter", "check_adapter_support", "merge_adapter", "method_of", "positions_taken",
    "register_adapter_method", "save_adapter",
]  # fmt: skip


def apply_adapter(
    backbone: nn.Module,
    settings: AdapterSettings,
    *,
    with_head: bool,
    tokenizer_source: str | None = None,
    saved: Path | None = None,
) -> nn.Module:
    """Freeze ``backbone`` and add the adapter: new (to train) or the one saved in ``saved``."""
    method = method_of(settings)
    model_type = backbone.config.model_type
    method.check_support(model_type)
    if saved is not None:
        return method.load(backbone, settings, saved / ADAPTER_DIR)
    return method.apply(backbone, settings, AdapterTarget(model_type, with_head, tokenizer_source))


def save_adapter(backbone: nn.Module, settings: AdapterSettings, directory: Path, base: tuple[str, str]) -> None:
    """Only the adapter's weights, and which base model they belong to."""
    folder = directory / ADAPTER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # peft looks for the base's config.json to see whether the vocabulary grew; a GGUF folder has
        # none, and the adapter never changes the vocabulary (no embedding layer is trained).
        warnings.filterwarnings("ignore", message="Could not find a config file", category=UserWarning)
        method_of(settings).save(backbone, settings, folder)
    (folder / BASE_FILE).write_text(json.dumps({"source": base[0], "field": base[1], "method": settings.method}))


def merge_adapter(backbone: nn.Module, settings: AdapterSettings) -> nn.Module:
    """The plain transformers model with the adapter folded into its weights (no extra latency)."""
    merge = method_of(settings).merge
    if merge is None:
        mergeable = ", ".join(name for name, method in sorted(ADAPTER_METHODS.items()) if method.merge is not None)
        raise UserError(
            f"only {mergeable} can be merged into the base weights; {settings.method} cannot (it adds tokens "
            "or modules at run time). Serve the run as it is."
        )
    return merge(backbone)


def positions_taken(settings: AdapterSettings | None) -> int:
    """Input positions the adapter's virtual tokens use up (0 without an adapter)."""
    return method_of(settings).positions_taken(settings) if settings is not None else 0


def check_adapter_support(settings: AdapterSettings | None, model_type: str) -> None:
    """One UserError line when the method cannot adapt this architecture."""
    if settings is not None:
        method_of(settings).check_support(model_type)


def adapter_size_mb(directory: Path) -> float:
    folder = directory / ADAPTER_DIR
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20
