"""Training objectives, usable with every model family.

- cross-entropy;
- R-Drop (Liang et al., 2021): two forward passes with different dropout masks, cross-entropy on both
  plus ``alpha`` times the symmetric KL divergence between their predictions;
- supervised contrastive (Khosla et al., 2020; Gunel et al., 2021 for fine-tuning): cross-entropy plus
  ``weight`` times the SupCon loss on L2-normalised pooled features.

Every network returns :class:`NetworkOutput`; an objective maps (network, batch) to (loss, logits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imdb_sentiment.config import ObjectiveConfig


@dataclass
class NetworkOutput:
    logits: Tensor  # (batch, classes)
    features: Tensor  # (batch, dim): the pooled representation the classifier head reads


Objective = Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, Tensor]]


def symmetric_kl(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """0.5 * (KL(p_a || p_b) + KL(p_b || p_a)), averaged over the batch."""
    log_a, log_b = F.log_softmax(logits_a.float(), dim=-1), F.log_softmax(logits_b.float(), dim=-1)
    kl_ab = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")  # KL(a || b)
    kl_ba = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")  # KL(b || a)
    return 0.5 * (kl_ab + kl_ba)


def supervised_contrastive_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """SupCon loss (Khosla et al. 2020, eq. 2, the 'L_out' form).

    For each anchor i with at least one positive: -1/|P(i)| * sum_{p in P(i)} log softmax_i(z_i.z_p / t),
    where the softmax runs over all other examples of the batch. Anchors without positives are skipped.
    """
    features = F.normalize(features.float(), dim=-1)
    similarity = features @ features.T / temperature
    size = features.shape[0]
    self_mask = torch.eye(size, dtype=torch.bool, device=features.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    positive_counts = positives.sum(dim=1)
    has_positive = positive_counts > 0
    if not has_positive.any():
        return features.sum() * 0.0
    summed = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(summed[has_positive] / positive_counts[has_positive]).mean()


def build_objective(config: ObjectiveConfig) -> Objective:
    def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)

    if config.name == "cross-entropy":

        def plain(network: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            output = network(batch)
            return cross_entropy(output.logits, batch["labels"]), output.logits

        return plain

    if config.name == "r-drop":

        def rdrop(network: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            first, second = network(batch).logits, network(batch).logits
            labels = batch["labels"]
            loss = 0.5 * (cross_entropy(first, labels) + cross_entropy(second, labels))
            return loss + config.rdrop_alpha * symmetric_kl(first, second), first

        return rdrop

    def supcon(network: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        output = network(batch)
        labels = batch["labels"]
        contrastive = supervised_contrastive_loss(output.features, labels, config.supcon_temperature)
        return cross_entropy(output.logits, labels) + config.supcon_weight * contrastive, output.logits

    return supcon
