"""Model registry: every model is one module that registers a class under a name.

Model modules are imported lazily by name (see ``MODEL_MODULES``) so that listing models or
training a linear baseline never imports heavy libraries it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypeVar

from imdb_sentiment.errors import UserError

if TYPE_CHECKING:
    from imdb_sentiment.models.base import SentimentModel

ModelClass = TypeVar("ModelClass", bound="type[SentimentModel]")

# name -> module that registers it. A new model adds one line here and one module.
MODEL_MODULES: dict[str, str] = {
    "tfidf-lr": "imdb_sentiment.models.linear",
    "nbsvm": "imdb_sentiment.models.linear",
    "doc2vec": "imdb_sentiment.models.doc_vectors",
    # word-level neural models (issue 3)
    "fasttext": "imdb_sentiment.models.word.fasttext",
    "cnn": "imdb_sentiment.models.word.cnn",
    "lstm": "imdb_sentiment.models.word.rnn",
    "gru": "imdb_sentiment.models.word.rnn",
    "cnn-lstm": "imdb_sentiment.models.word.cnn_lstm",
    "attention-lstm": "imdb_sentiment.models.word.attention_lstm",
    "capsule-lstm": "imdb_sentiment.models.word.capsule_lstm",
    "transformer": "imdb_sentiment.models.word.transformer",
    # pretrained encoders (issue 4)
    "hf": "imdb_sentiment.models.hf.model",
    "minilm": "imdb_sentiment.models.hf.model",
    "bert-scratch": "imdb_sentiment.models.hf.model",
    # combinations of the above
    "ensemble": "imdb_sentiment.models.ensemble",
    # language models
    "llm-score": "imdb_sentiment.models.llm.scoring",
    "llm-sft": "imdb_sentiment.models.llm.sft",
    "llm-prompt": "imdb_sentiment.models.llm.remote",
    "setfit": "imdb_sentiment.models.setfit_model",
}

_REGISTRY: dict[str, type[SentimentModel]] = {}


def register_model(name: str):
    """Class decorator: ``@register_model("cnn")``."""

    def decorator(cls: ModelClass) -> ModelClass:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_models() -> list[str]:
    return sorted(MODEL_MODULES)


def get_model_class(name: str) -> type[SentimentModel]:
    if name not in _REGISTRY:
        module = MODEL_MODULES.get(name)
        if module is None:
            raise UserError(f"Unknown model {name!r}. Registered models: {', '.join(available_models())}.")
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise RuntimeError(f"{MODEL_MODULES[name]} did not register {name!r}")
    return _REGISTRY[name]
