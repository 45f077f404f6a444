"""Poolings shared by the model families: one review's token states (or windows) -> one vector."""

from __future__ import annotations

import torch
from torch import Tensor


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
