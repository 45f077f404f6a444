"""Training backends, registered by name (``training.backend``): what drives the steps once a PyTorch
model has built its encoder, its network and the encoded splits.

- ``native``: the project's own loop (:mod:`.loop`), for every network that returns ``NetworkOutput``;
- ``trainer``: Hugging Face ``transformers.Trainer`` (:mod:`.hf_trainer`), for transformers networks.

A backend is one module holding a function ``fit(job: FitJob) -> FitResult`` decorated with
:func:`register_backend` (the kind of network it drives, and a check of the config on this machine that
runs before a run folder exists), plus its line in :data:`BACKEND_MODULES`; modules are imported lazily
by name, like the model registry. Models say which kinds of network they offer
(``Capabilities.network_kinds``: "torch" for any PyTorch network, "transformers" for a transformers model behind it);
a model with none fits itself (scikit-learn, an LLM server) and takes no backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from imdb_sentiment.config import TrainingConfig
    from imdb_sentiment.text.encoder import TextEncoder
    from imdb_sentiment.training.batching import EncodedDataset
    from imdb_sentiment.training.loop import FitResult
    from imdb_sentiment.training.runtime import Runtime

DEFAULT_BACKEND = "native"
# name -> module that registers it. A new backend adds one line here and one module.
BACKEND_MODULES: dict[str, str] = {
    "native": "imdb_sentiment.training.native",
    "trainer": "imdb_sentiment.training.hf_trainer",
}


@dataclass(frozen=True)
class FitJob:
    """What a backend is handed: the model's network, encoder and encoded splits, and how to train."""

    network: nn.Module
    encoder: TextEncoder
    train_data: EncodedDataset
    valid_data: EncodedDataset
    training: TrainingConfig
    runtime: Runtime
    seed: int = 42
    run_dir: Path | None = None
    resume: bool = False
    show_progress: bool = True
    callbacks: tuple[Any, ...] = field(default=())  # training.callbacks.Callback, for backends that take them


def _no_check(training: TrainingConfig, runtime: Runtime) -> None:
    return None


@dataclass(frozen=True)
class TrainingBackend:
    name: str
    fit: Callable[[FitJob], FitResult]
    network: str  # the kind of network it drives (a model's network_kinds must hold it)
    description: str
    # The config against this machine (devices, processes), before a run folder exists: UserError naming
    # the field.
    check: Callable[[TrainingConfig, Runtime], None] = _no_check


_REGISTRY: dict[str, TrainingBackend] = {}


def register_backend(
    name: str, *, network: str, description: str, check: Callable[[TrainingConfig, Runtime], None] | None = None
) -> Callable[[Callable[[FitJob], FitResult]], Callable[[FitJob], FitResult]]:
    """Decorator on a backend's ``fit(job)``: ``@register_backend("fsdp", network="torch", ...)``."""

    def decorator(fit: Callable[[FitJob], FitResult]) -> Callable[[FitJob], FitResult]:
        if name in _REGISTRY and _REGISTRY[name].fit is not fit:
            raise ValueError(f"training backend {name!r} registered twice")
        _REGISTRY[name] = TrainingBackend(name, fit, network, description, check or _no_check)
        return fit

    return decorator


def get_backend(name: str) -> TrainingBackend:
    if name not in _REGISTRY:
        module = BACKEND_MODULES.get(name)
        if module is None:
            raise UserError(
                f"training.backend: unknown backend {name!r}; registered: {', '.join(BACKEND_MODULES)}."
            )
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise RuntimeError(f"{BACKEND_MODULES[name]} did not register the training backend {name!r}")
    return _REGISTRY[name]


def check_backend_supports(name: str, model_name: str, network_kinds: frozenset[str]) -> None:
    """``training.backend`` can train this model (a pure check of the config: no device is looked at)."""
    if name not in BACKEND_MODULES:
        raise UserError(f"training.backend: unknown backend {name!r}; registered: {', '.join(BACKEND_MODULES)}.")
    if not network_kinds:
        if name != DEFAULT_BACKEND:
            raise UserError(
                f"training.backend: {name!r} trains PyTorch networks; {model_name!r} fits itself. Leave "
                f"training.backend at {DEFAULT_BACKEND!r}."
            )
        return
    backend = get_backend(name)
    if backend.network not in network_kinds:
        able = [other for other in BACKEND_MODULES if get_backend(other).network in network_kinds]
        raise UserError(
            f"training.backend: {name!r} ({backend.description}) trains {backend.network} networks and cannot "
            f"train {model_name!r}; use {' or '.join(repr(other) for other in able)}."
        )


def check_backend_runtime(training: TrainingConfig, runtime: Runtime) -> None:
    """The chosen backend's own checks of this machine (called once the runtime is resolved)."""
    get_backend(training.backend).check(training, runtime)
