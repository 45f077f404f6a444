"""``lstm`` and ``gru``: a (bi)directional recurrent encoder with masked pooling over time."""

from __future__ import annotations

from typing import ClassVar, Literal

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


class RNNParams(WordParams):
    hidden_size: int = Field(128, ge=1, le=4096, description="Units per direction.")
    num_layers: int = Field(1, ge=1, le=8)
    bidirectional: bool = True
    pooling: Pooling = Field("max+mean", description="How states become one vector: max, mean, max+mean, last.")


class RNNNetwork(nn.Module):
    def __init__(
        self, embedding: WordEmbedding, cell: Literal["lstm", "gru"], params: RNNParams, classes: int
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.rnn = MaskedRNN(
            cell, embedding.dim, params.hidden_size, params.num_layers, params.bidirectional, params.dropout
        )
        self.pooling = params.pooling
        self.head = ClassifierHead(pooled_size(self.rnn.output_size, params.pooling), params.dropout, classes)

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = token_mask(batch)
        states, final = self.rnn(self.embedding(batch["input_ids"], mask), mask)
        features = pool_sequence(states, mask, self.pooling, final)
        return NetworkOutput(self.head(features), features)


class RecurrentModel(WordModel):
    Params = RNNParams
    params: RNNParams
    cell: ClassVar[Literal["lstm", "gru"]] = "lstm"

    def build_network(self, request: NetworkRequest) -> nn.Module:
        return RNNNetwork(self.make_embedding(), self.cell, self.params, self.num_classes)


@register_model("lstm")
class LSTMModel(RecurrentModel):
    description = "BiLSTM over word2vec embeddings, masked max+mean pooling."
    cell = "lstm"


@register_model("gru")
class GRUModel(RecurrentModel):
    description = "BiGRU over word2vec embeddings, masked max+mean pooling."
    cell = "gru"
