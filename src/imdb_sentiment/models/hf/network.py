"""The adapter the shared loop trains: a transformers model behind the project's network contract
(batch dict in, :class:`NetworkOutput` out), with our own head for cls / mean pooling, chunk pooling,
and the optimizer's parameter groups (no decay on biases / norms, layer-wise learning-rate decay)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.models.hf.params import Pooling
from imdb_sentiment.models.pooling import masked_mean, pool_chunks
from imdb_sentiment.training.optimization import NO_DECAY_HINTS
from imdb_sentiment.training.outputs import NetworkOutput

_LAYER_PATTERN = re.compile(r"(?:^|\.)(?:layer|layers|block|blocks)\.(\d+)\.")


class HFNetwork(nn.Module):
    """Adapter: batch dict -> ``NetworkOutput(logits, features)`` around a transformers model.

    ``features`` (what SupCon reads) is the final [CLS] state for ``pooling: model``, asked for with
    ``output_hidden_states`` only when ``return_features`` is set, or the pooled state our head reads.
    ``num_classes``: outputs of our head (cls / mean); ``pooling: model`` has the checkpoint's num_labels.
    """

    def __init__(
        self, backbone: nn.Module, pooling: Pooling = "model", dropout: float | None = None,
        return_features: bool = False, num_classes: int = 2,
    ) -> None:  # fmt: skip
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.return_features = return_features
        self.head: nn.Linear | None = None
        if pooling != "model":
            config = backbone.config
            rate = dropout if dropout is not None else getattr(config, "hidden_dropout_prob", 0.1)
            self.dropout = nn.Dropout(rate)
            self.head = nn.Linear(config.hidden_size, num_classes)
            nn.init.normal_(self.head.weight, std=getattr(config, "initializer_range", 0.02))
            nn.init.zeros_(self.head.bias)

    def forward(self, batch: dict[str, torch.Tensor]) -> NetworkOutput:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.head is None:
            output = self.backbone(**inputs, output_hidden_states=self.return_features)
            logits = output.logits
            features = output.hidden_states[-1][:, 0] if self.return_features else logits
        else:
            hidden = self.backbone(**inputs).last_hidden_state
            # Prompt methods (p-tuning, prompt tuning) prepend virtual tokens: pool the review's own
            # tokens only, so [CLS] is the real one and the mean matches the attention mask.
            hidden = hidden[:, hidden.shape[1] - batch["attention_mask"].shape[1] :]
            features = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, batch["attention_mask"])
            logits = self.head(self.dropout(features))
        if "chunk_index" in batch:
            num_reviews = batch["num_chunks"].shape[0]
            logits = pool_chunks(logits, batch["chunk_index"], num_reviews)
            features = pool_chunks(features, batch["chunk_index"], num_reviews)
        return NetworkOutput(logits=logits, features=features)

    # --------------------------------------------------------------------- layer-wise learning rates
    def num_layers(self) -> int:
        indices = [
            int(m.group(1)) for name, _ in self.backbone.named_parameters() if (m := _LAYER_PATTERN.search(name))
        ]
        return max(indices) + 1 if indices else 0

    def layer_depth(self, name: str, num_layers: int) -> int:
        """0 for embeddings, i + 1 for encoder layer i, num_layers + 1 for pooler / head."""
        if "embeddings" in name:
            return 0
        match = _LAYER_PATTERN.search(name)
        return int(match.group(1)) + 1 if match else num_layers + 1

    def parameter_groups(self, config: TrainingConfig) -> list[dict[str, Any]]:
        """Weight decay off for biases / norms; with ``layerwise_lr_decay`` d, layer k of L gets
        lr * d^(L + 1 - k) (Howard & Ruder 2018; Sun et al. 2019 use d = 0.95)."""
        decay_rate = config.layerwise_lr_decay
        num_layers = self.num_layers()
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            scale = 1.0
            if decay_rate is not None:
                scale = decay_rate ** (num_layers + 1 - self.layer_depth(name, num_layers))
            no_decay = parameter.ndim < 2 or any(hint in name for hint in NO_DECAY_HINTS)
            groups.setdefault((scale, 0.0 if no_decay else config.weight_decay), []).append(parameter)
        # No optimizer options here: a group's own "fused" would win over training.optimizer_kernel,
        # which build_optimizer applies to every group (auto: fused, ~4x faster per step on CPU).
        return [
            {"params": params, "lr": config.learning_rate * scale, "weight_decay": weight_decay}
            for (scale, weight_decay), params in groups.items()
        ]
