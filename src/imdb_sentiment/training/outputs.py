"""What every network returns: the contract between networks, objectives and the loop."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class NetworkOutput:
    logits: Tensor  # (batch, classes)
    features: Tensor  # (batch, dim): the pooled representation the classifier head reads
