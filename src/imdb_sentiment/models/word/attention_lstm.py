"""``attention-lstm``: BiLSTM + additive attention pooling (Bahdanau et al. 2015; Yang et al. 2016).

The attention weights of the last forward pass are kept (``network.last_attention``) and returned in
:class:`AttentionOutput`, for visualising which words the model looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from pydantic import Field
from torch import Tensor, nn

from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.models.word.base import (
    ClassifierHead,
    MaskedRNN,
    WordEmbedding,
    WordModel,
    WordParams,
    masked_softmax,
    token_mask,
)
from imdb_sentiment.training.outputs import NetworkOutput


@dataclass
class AttentionOutput(NetworkOutput):
    attention: Tensor | None = None  # (B, T): weights over tokens, 0 at padding, rows sum to 1


class AdditiveAttention(nn.Module):
    """score_t = v . tanh(W h_t + b); weights = masked softmax over t; context = sum_t weight_t h_t."""

    def __init__(self, size: int, attention_size: int) -> None:
        super().__init__()
        self.project = nn.Linear(size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        weights = masked_softmax(self.score(torch.tanh(self.project(states))).squeeze(-1), mask)
        return torch.bmm(weights.unsqueeze(1), states).squeeze(1), weights


class AttentionLSTMParams(WordParams):
    hidden_size: int = Field(128, ge=1, le=4096, description="Units per direction.")
    num_layers: int = Field(1, ge=1, le=8)
    attention_size: int = Field(128, ge=1, le=4096)


class AttentionLSTMNetwork(nn.Module):
    def __init__(self, embedding: WordEmbedding, params: AttentionLSTMParams, classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.rnn = MaskedRNN("lstm", embedding.dim, params.hidden_size, params.num_layers, True, params.dropout)
        self.attention = AdditiveAttention(self.rnn.output_size, params.attention_size)
        self.head = ClassifierHead(self.rnn.output_size, params.dropout, classes)
        self.last_attention: Tensor | None = None

    def forward(self, batch: dict[str, Tensor]) -> AttentionOutput:
        mask = token_mask(batch)
        states, _ = self.rnn(self.embedding(batch["input_ids"], mask), mask)
        features, weights = self.attention(states, mask)
        self.last_attention = weights.detach()
        return AttentionOutput(self.head(features), features, weights)


@register_model("attention-lstm")
class AttentionLSTMModel(WordModel):
    Params = AttentionLSTMParams
    params: AttentionLSTMParams
    description = "BiLSTM with additive attention pooling (weights exposed for visualisation)."
    capabilities = replace(WordModel.capabilities, explanation="attention")  # its own attention weights

    def build_network(self, request: NetworkRequest) -> nn.Module:
        return AttentionLSTMNetwork(self.make_embedding(), self.params, self.num_classes)

    def attention_weights(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        """(token, weight) pairs per text, in reading order (after truncation)."""
        assert self.network is not None, "fit or load the model first"
        vocabulary = self.vocabulary
        results = []
        self.network.eval()
        with torch.no_grad():
            for ids in self.encode(texts).token_ids:
                batch = {
                    "input_ids": torch.tensor([ids]),
                    "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
                }
                weights = self.network(batch).attention[0].tolist()
                results.append([(vocabulary.tokens[i], w) for i, w in zip(ids, weights, strict=True)])
        return results
