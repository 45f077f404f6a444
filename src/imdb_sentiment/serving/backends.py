"""Serving backends: what runs a finished run's model for ``predict``, ``evaluate`` and ``serve``.

A backend is any object with the :class:`ServingBackend` shape (``name``, ``config``,
``predict_proba``, ``known_token_share``), made from a run folder by a loader registered under a
name: ``native`` (the run's own PyTorch / scikit-learn model, here) and ``onnx`` (its ONNX export on
onnxruntime, :mod:`.onnx_backend`). An OpenVINO or TensorRT backend is one module with a
``@register_serving_backend("openvino")`` loader plus its line in :data:`BACKEND_MODULES` (modules
are imported only when their backend is asked for, so onnxruntime loads only for ``--onnx``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import SentimentModel

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

BACKEND_MODULES: dict[str, str] = {
    "native": "imdb_sentiment.serving.backends",
    "onnx": "imdb_sentiment.serving.onnx_backend",
}


@runtime_checkable
class ServingBackend(Protocol):
    """``name`` says what runs the model ("native", "onnxruntime int8"; shown on the card and in
    metrics); ``config`` is the run's config (its cleaning, its model); texts arrive cleaned."""

    name: str
    config: ExperimentConfig
    classes: LabelSpace  # the model's classes: the columns of predict_proba

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """(n, K) class probabilities, columns in ``classes`` order."""
        ...

    def known_token_share(self, texts: list[str]) -> np.ndarray | None:
        """Per text, the share of its tokens the model knows; None when the model cannot tell."""
        ...


BackendLoader = Callable[[Path, "ExperimentConfig"], ServingBackend]
_LOADERS: dict[str, BackendLoader] = {}


def register_serving_backend(name: str) -> Callable[[BackendLoader], BackendLoader]:
    """Decorate ``load(run_dir, config) -> ServingBackend`` (the run's model files are already checked)."""

    def register(loader: BackendLoader) -> BackendLoader:
        _LOADERS[name] = loader
        return loader

    return register


def load_backend(name: str, run_dir: Path, config: ExperimentConfig) -> ServingBackend:
    if name not in _LOADERS:
        if name not in BACKEND_MODULES:
            raise UserError(f"No serving backend {name!r}; known: {', '.join(sorted(BACKEND_MODULES))}.")
        importlib.import_module(BACKEND_MODULES[name])
    return _LOADERS[name](Path(run_dir), config)


class NativeBackend:
    """The run's saved model, run by its own library (PyTorch, scikit-learn)."""

    name = "native"

    def __init__(self, model: SentimentModel, config: ExperimentConfig) -> None:
        self.model, self.config = model, config

    @property
    def classes(self) -> LabelSpace:
        return self.model.classes

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return self.model.predict_proba(texts, batch_size=batch_size)

    def known_token_share(self, texts: list[str]) -> np.ndarray | None:
        return self.model.known_token_share(texts)


@register_serving_backend("native")
def load_native(run_dir: Path, config: ExperimentConfig) -> NativeBackend:
    return NativeBackend(SentimentModel.load(run_dir / "model"), config)
