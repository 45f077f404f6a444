"""Glue between the registry contract and the shared training loop for every PyTorch model.

A PyTorch model subclasses :class:`TorchTextClassifier` and supplies two things: how texts become
token ids (:meth:`build_encoder`, :meth:`load_encoder`) and the network (:meth:`build_network`, told
what to build by a :class:`NetworkRequest`). Fitting, prediction, saving and loading are shared.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import nn

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.models.base import Capabilities, FitContext, ModelParams, SentimentModel
from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.text.truncation import Truncation
from imdb_sentiment.training.backends import FitJob, check_backend_supports, get_backend
from imdb_sentiment.training.batching import EncodedDataset
from imdb_sentiment.training.inference import dataset_logits, softmax
from imdb_sentiment.training.loop import FitResult
from imdb_sentiment.training.objectives import objective_needs_features
from imdb_sentiment.training.runtime import Runtime, seed_everything


class TorchParams(ModelParams):
    max_length: int = Field(400, ge=8, le=8192, description="Tokens kept per review.")
    truncation: Truncation = "head+tail"
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


@dataclass(frozen=True)
class NetworkRequest:
    """What :meth:`TorchTextClassifier.build_network` is asked to build."""

    features: bool = False  # the objective reads NetworkOutput.features (supervised contrastive)
    weights: Path | None = None  # a saved model folder whose weights the network is rebuilt from


class TorchTextClassifier(SentimentModel):
    params: TorchParams
    capabilities = Capabilities(
        kind="pytorch (shared loop)", needs_torch_runtime=True, trains_with_loop=True, supports_resume=True,
        exportable_to_onnx=True, explanation="occlusion", network_kinds=frozenset({"torch"}),
    )  # fmt: skip

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.encoder: TextEncoder | None = None
        self.network: nn.Module | None = None
        # Fitting uses the context's runtime; a loaded model predicts on the best device here.
        self.runtime: Runtime | None = None
        self.fit_result: FitResult | None = None

    # ----------------------------------------------------------------------- what subclasses supply
    @abstractmethod
    def build_encoder(self, train: TextDataset, context: FitContext) -> TextEncoder: ...

    @abstractmethod
    def load_encoder(self, directory: Path) -> TextEncoder: ...

    @abstractmethod
    def build_network(self, request: NetworkRequest) -> nn.Module:
        """A module whose ``forward(batch)`` returns ``NetworkOutput(logits, features)``, with
        ``self.num_classes`` logits (fit learns the classes first; load restores them first)."""

    # ---------------------------------------------------------------------------------- shared parts
    def encode(self, texts: list[str], labels: np.ndarray | None = None) -> EncodedDataset:
        assert self.encoder is not None
        return EncodedDataset(self.encoder.encode(texts), labels)

    def inference_runtime(self) -> Runtime:
        if self.runtime is None:
            self.runtime = Runtime.resolve()
        return self.runtime

    def prepare_fit(
        self, train: TextDataset, valid: TextDataset, context: FitContext
    ) -> tuple[EncodedDataset, EncodedDataset]:
        """Learn the classes, seed, pick the device, build encoder and network (one output per class),
        encode both splits (any training backend)."""
        self.learn_classes(train)
        seed_everything(context.seed)
        self.runtime = (context.runtime or Runtime.from_training(context.training)).apply()
        self.encoder = self.build_encoder(train, context)
        seed_everything(context.seed)  # network init does not depend on how the encoder was built
        self.network = self.build_network(
            NetworkRequest(features=objective_needs_features(context.training.objective))
        )
        return self.encode(train.texts, train.labels), self.encode(valid.texts, valid.labels)

    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> TorchTextClassifier:
        """Build, then train with the backend ``training.backend`` names (the shared loop by default)."""
        check_backend_supports(context.training.backend, self.name, self.capabilities.network_kinds)
        backend = get_backend(context.training.backend)
        train_data, valid_data = self.prepare_fit(train, valid, context)
        assert self.runtime is not None and self.network is not None and self.encoder is not None
        job = FitJob(self.network, self.encoder, train_data, valid_data, context.training, self.runtime,
                     seed=context.seed, run_dir=context.run_dir, resume=context.resume,
                     show_progress=context.show_progress, callbacks=tuple(context.callbacks))  # fmt: skip
        self.fit_result = backend.fit(job)
        self.record_fit(context, self.fit_result, train_data)
        context.extra_metrics["backend"] = backend.name
        return self

    @staticmethod
    def record_fit(context: FitContext, result: FitResult, train_data: EncodedDataset) -> None:
        """Put the fit's history and summary where the run folder picks them up."""
        context.history.extend(result.history)
        context.extra_metrics.update(
            {
                "best_epoch": result.best_epoch,
                "valid_accuracy": result.best_valid_accuracy,
                "optimizer_steps": result.steps,
                "stopped_early": result.stopped_early,
                "loop_train_seconds": result.train_seconds,
                "earlier_train_seconds": result.earlier_seconds,
                "mean_train_tokens": float(train_data.lengths.mean()),
            }
        )
        if result.world_size > 1:
            context.extra_metrics["distributed"] = {
                "world_size": result.world_size,
                "weights_identical_across_ranks": result.weights_identical_across_ranks,
            }

    def predict_proba(self, texts: list[str], batch_size: int = 128, show_progress: bool = False) -> np.ndarray:
        assert self.encoder is not None and self.network is not None, "fit or load the model first"
        logits = dataset_logits(
            self.network, self.encoder, self.encode(texts), batch_size, self.inference_runtime(),
            show_progress=show_progress, num_classes=self.num_classes,
        )  # fmt: skip
        return softmax(logits)

    def device_used(self) -> str:
        return str(self.inference_runtime().device)

    def input_embeddings(self) -> tuple[nn.Module, int]:
        """The layer that embeds token ids and the id that stands for "no token" (integrated gradients'
        baseline); models whose capabilities say ``explanation="integrated-gradients"`` supply it."""
        raise NotImplementedError(f"{self.name} does not say which layer embeds its tokens")

    def num_parameters(self) -> int:
        assert self.network is not None
        return sum(parameter.numel() for parameter in self.network.parameters())

    def num_trainable_parameters(self) -> int:
        assert self.network is not None
        return sum(parameter.numel() for parameter in self.network.parameters() if parameter.requires_grad)

    def save_weights(self, directory: Path) -> None:
        assert self.encoder is not None and self.network is not None
        self.encoder.save(directory)
        torch.save({k: v.cpu() for k, v in self.network.state_dict().items()}, directory / "network.pt")

    def load_weights(self, directory: Path) -> None:
        self.encoder = self.load_encoder(directory)
        self.network = self.build_network(NetworkRequest(weights=directory))
        state = torch.load(directory / "network.pt", map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.eval()
