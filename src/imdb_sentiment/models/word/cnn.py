"""``cnn``: Kim (2014)-style text CNN: parallel convolutions of several widths, max over time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.models.word.base import ClassifierHead, WordEmbedding, WordModel, WordParams, token_mask
from imdb_sentiment.training.outputs import NetworkOutput


class CNNParams(WordParams):
    kernel_sizes: list[int] = Field([2, 3, 4], min_length=1, description="Convolution widths (words).")
    num_filters: int = Field(128, ge=1, le=4096, description="Filters per width.")


class CNNNetwork(nn.Module):
    def __init__(self, embedding: WordEmbedding, params: CNNParams, classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        # padding=k-1 ("wide" convolution): every window touching a real word exists whatever the
        # batch padding, and reviews shorter than k still produce outputs.
        self.convolutions = nn.ModuleList(
            nn.Conv1d(embedding.dim, params.num_filters, size, padding=size - 1) for size in params.kernel_sizes
        )
        self.head = ClassifierHead(params.num_filters * len(params.kernel_sizes), params.dropout, classes)

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = token_mask(batch)
        lengths = mask.sum(dim=1, keepdim=True)
        embedded = self.embedding(batch["input_ids"], mask).transpose(1, 2)  # (B, D, T)
        pooled = []
        for convolution in self.convolutions:
            maps = F.relu(convolution(embedded))  # (B, F, T + k - 1)
            # Output j covers words j-k+1..j: it is real iff it overlaps the review (j < length + k - 1).
            positions = torch.arange(maps.shape[-1], device=maps.device).unsqueeze(0)
            valid = positions < lengths + convolution.kernel_size[0] - 1
            pooled.append(maps.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(dim=-1))
        features = torch.cat(pooled, dim=-1)
        return NetworkOutput(self.head(features), features)


@register_model("cnn")
class CNNModel(WordModel):
    Params = CNNParams
    params: CNNParams
    description = "Text CNN (widths 2/3/4, max over time) over word2vec embeddings (Kim 2014)."

    def build_network(self, request: NetworkRequest) -> nn.Module:
        return CNNNetwork(self.make_embedding(), self.params, self.num_classes)
