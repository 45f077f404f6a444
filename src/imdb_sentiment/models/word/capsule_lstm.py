"""``capsule-lstm``: BiLSTM states -> primary capsules -> dynamic routing -> one capsule per class.

Dynamic routing (Sabour, Frosst & Hinton 2017, "Dynamic Routing Between Capsules", Procedure 1) is
written here because PyTorch has no capsule layer. Logits are the class capsules' lengths, scaled.

Two deliberate departures from the image-capsule recipe, both because inputs are variable-length text:
- the class capsule input is the coupling-weighted *average* of votes over the real positions (the
  paper sums): a sum would make capsule lengths grow with review length; padded positions are masked
  out of the routing entirely;
- the shared loss is cross-entropy, so logits = ``length_scale`` * capsule length (the paper's margin
  loss on lengths plays the same role).

Optionally (``orphan_capsule``) routing gets one extra output capsule that is not a class, the "orphan
category" of Zhao et al. (2018, "Investigating Capsule Networks with Dynamic Routing for Text
Classification"): most words of a review carry no sentiment, and the orphan lets them route away from
the class capsules instead of splitting their vote between the classes.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.models.word.base import MaskedRNN, WordEmbedding, WordModel, WordParams, token_mask
from imdb_sentiment.training.outputs import NetworkOutput


def squash(vectors: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """v = |s|^2 / (1 + |s|^2) * s / |s|: keeps the direction, maps the length into [0, 1)."""
    squared = (vectors * vectors).sum(dim=dim, keepdim=True)
    return vectors * (squared / (1.0 + squared)) / torch.sqrt(squared + eps)


def dynamic_routing(votes: Tensor, mask: Tensor, iterations: int) -> Tensor:
    """Route (B, N, J, D) votes of N input capsules for J output capsules; (B, N) mask of real inputs.

    Returns the (B, J, D) output capsules. Only the last iteration passes gradients to the votes
    (earlier agreement updates use detached votes), as in common implementations, for stability.
    """
    weights = mask.unsqueeze(-1).to(votes.dtype)  # (B, N, 1)
    count = weights.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    logits = torch.zeros(votes.shape[:3], device=votes.device, dtype=votes.dtype)  # (B, N, J)
    detached = votes.detach()
    for iteration in range(iterations):
        coupling = torch.softmax(logits, dim=-1) * weights  # each input splits its vote across classes
        final = iteration == iterations - 1
        source = votes if final else detached
        outputs = squash((coupling.unsqueeze(-1) * source).sum(dim=1) / count)  # (B, J, D)
        if final:
            return outputs
        logits = logits + (detached * outputs.unsqueeze(1)).sum(dim=-1)  # agreement
    raise ValueError("iterations must be >= 1")


class CapsuleLSTMParams(WordParams):
    hidden_size: int = Field(128, ge=1, le=4096, description="BiLSTM units per direction.")
    primary_capsules: int = Field(4, ge=1, le=64, description="Primary capsule types per position.")
    primary_dim: int = Field(16, ge=2, le=256)
    class_dim: int = Field(16, ge=2, le=256, description="Dimension of each class capsule.")
    routing_iterations: int = Field(3, ge=1, le=10)
    length_scale: float = Field(10.0, gt=0.0, le=100.0, description="logits = scale * capsule length.")
    orphan_capsule: bool = Field(False, description="Extra non-class capsule that absorbs neutral words.")


class CapsuleLSTMNetwork(nn.Module):
    def __init__(self, embedding: WordEmbedding, params: CapsuleLSTMParams, classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.rnn = MaskedRNN("lstm", embedding.dim, params.hidden_size, 1, True)
        self.dropout = nn.Dropout(params.dropout)
        self.types, self.primary_dim = params.primary_capsules, params.primary_dim
        self.primary = nn.Linear(self.rnn.output_size, self.types * self.primary_dim)
        # One transformation matrix per (primary capsule type, output capsule), shared across positions.
        self.classes = classes
        outputs = classes + int(params.orphan_capsule)
        self.transforms = nn.Parameter(
            torch.randn(self.types, outputs, params.class_dim, self.primary_dim) * self.primary_dim**-0.5
        )
        self.iterations = params.routing_iterations
        self.length_scale = params.length_scale

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = token_mask(batch)
        states, _ = self.rnn(self.embedding(batch["input_ids"], mask), mask)
        size, steps = mask.shape
        primary = squash(self.primary(self.dropout(states)).view(size, steps, self.types, self.primary_dim))
        votes = torch.einsum("btkp,kjcp->btkjc", primary, self.transforms)
        votes = votes.reshape(size, steps * self.types, *votes.shape[-2:])  # (B, N, J, D)
        capsule_mask = mask.repeat_interleave(self.types, dim=1)
        capsules = dynamic_routing(votes, capsule_mask, self.iterations)[:, : self.classes]  # (B, J, D)
        logits = self.length_scale * capsules.norm(dim=-1)
        return NetworkOutput(logits, capsules.flatten(1))


@register_model("capsule-lstm")
class CapsuleLSTMModel(WordModel):
    Params = CapsuleLSTMParams
    params: CapsuleLSTMParams
    description = "BiLSTM states routed into class capsules by dynamic routing (Sabour et al. 2017)."

    def build_network(self, request: NetworkRequest) -> nn.Module:
        return CapsuleLSTMNetwork(self.make_embedding(), self.params, self.num_classes)
