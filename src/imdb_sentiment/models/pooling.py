"""Poolings shared by the model families: one review's token states (or windows) -> one vector."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over time (dim 1) of (B, T, D) values at the positions where the (B, T) mask is set."""
    weights = mask.unsqueeze(-1).to(values.dtype)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def pool_chunks(values: Tensor, chunk_index: Tensor, num_reviews: int) -> Tensor:
    """Mean of the rows of ``values`` that belong to each review (``chunk_index`` names the review)."""
    values = values.float()
    sums = values.new_zeros((num_reviews, values.shape[-1])).index_add_(0, chunk_index, values)
    counts = torch.bincount(chunk_index, minlength=num_reviews).clamp(min=1).to(values.dtype)
    return sums / counts[:, None]


class MeanOfEmbeddings(nn.Module):
    """``nn.EmbeddingBag(mode="mean", padding_idx=p)`` over a (batch, length) matrix of ids, written as
    an embedding lookup, a sum and a count. Why: torch.onnx turns EmbeddingBag into a Loop that runs
    once per review, which made fastText's graph ~20x slower on onnxruntime than in PyTorch; this form
    is one Gather and two reductions. Same numbers: EmbeddingBag leaves padding ids out of the mean,
    so the padding row is zeroed here (it adds nothing to the sum) and not counted; an all-padding
    row gives zeros, as EmbeddingBag does."""

    def __init__(self, bag: nn.EmbeddingBag) -> None:
        super().__init__()
        weight = bag.weight.detach().clone()
        if bag.padding_idx is not None:
            weight[bag.padding_idx] = 0.0
        self.weight, self.padding_idx = nn.Parameter(weight, requires_grad=False), bag.padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        sums = nn.functional.embedding(ids, self.weight).sum(dim=1)
        if self.padding_idx is None:
            return sums / ids.shape[1]
        counts = (ids != self.padding_idx).sum(dim=1, keepdim=True).clamp(min=1)
        return sums / counts.to(sums.dtype)
