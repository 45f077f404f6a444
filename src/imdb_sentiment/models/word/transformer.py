"""``transformer``: a Transformer encoder trained from scratch on word embeddings.

PyTorch's ``nn.TransformerEncoder`` does the work (pre-LayerNorm blocks, which train stably without a
long warm-up); written here are only the positional encodings, the optional input projection and the
pooling. Padded positions are excluded with ``src_key_padding_mask`` and from the pooling.

The write-up's transformer failed because the embedding size (300) differed from the model width
(120). Here the embeddings are projected to ``d_model`` when they differ, or, with
``project_embeddings: false``, the config is refused with a message naming both fields.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.pooling import masked_mean
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.models.word.base import ClassifierHead, WordEmbedding, WordModel, WordParams, token_mask
from imdb_sentiment.training.outputs import NetworkOutput

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig


class TransformerParams(WordParams):
    d_model: int | None = Field(None, ge=8, le=4096, description="Model width; default: embedding_dim.")
    project_embeddings: bool = Field(
        True, description="Project embeddings to d_model when they differ (else refuse the config)."
    )
    num_heads: int = Field(4, ge=1, le=64)
    num_layers: int = Field(2, ge=1, le=24)
    feedforward_dim: int = Field(512, ge=8, le=16384, description="Width of each block's feed-forward layer.")
    # 0 by default: dropout on the attention matrix materialises it (T x T per head) and rules out the
    # fused attention kernel, which halves the step time on CPU.
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    pooling: Literal["mean", "cls"] = "mean"

    @property
    def width(self) -> int:
        return self.d_model or self.embedding_dim


def sinusoidal_table(positions: int, dim: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...) (Vaswani et al. 2017)."""
    position = torch.arange(positions, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table


class TransformerNetwork(nn.Module):
    def __init__(self, embedding: WordEmbedding, params: TransformerParams, classes: int) -> None:
        super().__init__()
        width = params.width
        self.embedding = embedding
        self.project = nn.Linear(embedding.dim, width) if embedding.dim != width else nn.Identity()
        # Normalising the token vectors puts word2vec, GloVe or random inputs on the scale of the
        # positional encodings (norm ~ sqrt(d/2)), whatever the source's own scale.
        self.input_norm = nn.LayerNorm(width)
        positions = params.max_length + 1  # +1 for a CLS token
        if params.positional == "learned":
            self.positions = nn.Parameter(torch.randn(positions, width) * 0.02)
        else:
            self.register_buffer("positions", sinusoidal_table(positions, width), persistent=False)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02) if params.pooling == "cls" else None
        self.dropout = nn.Dropout(params.dropout)
        block = nn.TransformerEncoderLayer(
            width,
            params.num_heads,
            params.feedforward_dim,
            params.attention_dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(block, params.num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)
        self.head = ClassifierHead(width, params.dropout, classes)

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = token_mask(batch)
        tokens = self.input_norm(self.project(self.embedding(batch["input_ids"], mask)))
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        # The encoder truncates reviews to max_length, so steps past the table can only be padding
        # (a batch padded further by a caller): they reuse the last row and are masked anyway.
        steps = torch.arange(tokens.shape[1], device=tokens.device).clamp_max(self.positions.shape[0] - 1)
        hidden = self.dropout(tokens + self.positions[steps])
        hidden = self.final_norm(self.encoder(hidden, src_key_padding_mask=~mask))
        features = hidden[:, 0] if self.cls is not None else masked_mean(hidden, mask)
        return NetworkOutput(self.head(features), features)


@register_model("transformer")
class TransformerModel(WordModel):
    Params = TransformerParams
    params: TransformerParams
    description = "Transformer encoder from scratch (sinusoidal/learned positions, mean/CLS pooling)."

    @classmethod
    def check_config(cls, config: ExperimentConfig, params: TransformerParams) -> None:  # type: ignore[override]
        super().check_config(config, params)
        if params.d_model is not None and params.d_model != params.embedding_dim and not params.project_embeddings:
            raise UserError(
                f"model.params.d_model: {params.d_model} differs from model.params.embedding_dim "
                f"{params.embedding_dim}; set them equal or set model.params.project_embeddings to true."
            )
        if params.width % params.num_heads:
            field = "d_model" if params.d_model is not None else "embedding_dim (the model width)"
            raise UserError(
                f"model.params.num_heads: {params.num_heads} does not divide model.params.{field} "
                f"{params.width}; choose a number of heads that divides it."
            )

    def build_network(self, request: NetworkRequest) -> nn.Module:
        return TransformerNetwork(self.make_embedding(), self.params, self.num_classes)
