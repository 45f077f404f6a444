"""``cnn-lstm``: a convolution extracts local phrase features, max-pooling shortens the sequence,
then a BiLSTM reads the shorter sequence (cheaper than an LSTM over every word)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.models.word.base import (
    ClassifierHead,
    MaskedRNN,
    Pooling,
    WordEmbedding,
    WordModel,
    WordParams,
    pool_sequence,
    pooled_size,
    token_mask,
)
from imdb_sentiment.training.outputs import NetworkOutput


class CNNLSTMParams(WordParams):
    num_filters: int = Field(128, ge=1, le=4096)
    kernel_size: int = Field(3, ge=1, le=15, description="Convolution width; odd keeps positions aligned.")
    pool_size: int = Field(2, ge=1, le=16, description="Max-pool window and stride before the LSTM.")
    hidden_size: int = Field(128, ge=1, le=4096)
    bidirectional: bool = True
    pooling: Pooling = "max+mean"


class CNNLSTMNetwork(nn.Module):
    def __init__(self, embedding: WordEmbedding, params: CNNLSTMParams, classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        # "same" padding: inputs at padded positions are exactly zero, like the convolution's own
        # zero padding, so outputs at real positions do not depend on how much padding follows.
        self.convolution = nn.Conv1d(
            embedding.dim, params.num_filters, params.kernel_size, padding=params.kernel_size // 2
        )
        self.pool_size = params.pool_size
        self.rnn = MaskedRNN("lstm", params.num_filters, params.hidden_size, 1, params.bidirectional)
        self.pooling = params.pooling
        self.dropout = nn.Dropout(params.dropout)
        self.head = ClassifierHead(pooled_size(self.rnn.output_size, params.pooling), params.dropout, classes)

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = token_mask(batch)
        embedded = self.embedding(batch["input_ids"], mask).transpose(1, 2)  # (B, D, T)
        maps = F.relu(self.convolution(embedded))[..., : mask.shape[1]]  # even widths add one position
        maps = maps.masked_fill(~mask.unsqueeze(1), float("-inf"))
        pooled = F.max_pool1d(maps, self.pool_size, self.pool_size, ceil_mode=True)  # (B, F, T')
        # A pooled window is real iff its first word is: ceil(length / pool) of them.
        lengths = (mask.sum(dim=1) + self.pool_size - 1) // self.pool_size
        pooled_mask = torch.arange(pooled.shape[-1], device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)
        sequence = pooled.transpose(1, 2).masked_fill(~pooled_mask.unsqueeze(-1), 0.0)
        states, final = self.rnn(self.dropout(sequence), pooled_mask)
        features = pool_sequence(states, pooled_mask, self.pooling, final)
        return NetworkOutput(self.head(features), features)


@register_model("cnn-lstm")
class CNNLSTMModel(WordModel):
    Params = CNNLSTMParams
    params: CNNLSTMParams
    description = "Convolution + max-pool, then a BiLSTM over the shortened sequence."

    def build_network(self, request: NetworkRequest) -> nn.Module:
        return CNNLSTMNetwork(self.make_embedding(), self.params, self.num_classes)
