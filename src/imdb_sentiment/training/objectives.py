"""Training objectives, usable with every model family, registered by name.

- ``cross-entropy``;
- ``r-drop`` (Liang et al., 2021): two forward passes with different dropout masks, cross-entropy on
  both plus ``alpha`` times the symmetric KL divergence between their predictions;
- ``supcon``, supervised contrastive (Khosla et al., 2020; Gunel et al., 2021 for fine-tuning):
  cross-entropy plus ``weight`` times the SupCon loss on L2-normalised pooled features.

An objective maps (network, batch) to (loss, logits); every network returns :class:`NetworkOutput`.
A new objective is one factory decorated with :func:`register_objective` (its settings go in
``ObjectiveConfig``); ``training.objective.name`` is validated against this registry. torch is
imported inside the functions: validating any config (an nbsvm one too) reads the registry, and
importing torch costs ~3 s there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imdb_sentiment.config import ObjectiveConfig

if TYPE_CHECKING:
    from torch import Tensor, nn

Objective = Callable[["nn.Module", dict[str, "Tensor"]], tuple["Tensor", "Tensor"]]
ObjectiveFactory = Callable[[ObjectiveConfig], Objective]


@dataclass(frozen=True)
class RegisteredObjective:
    build: ObjectiveFactory
    needs_features: bool  # reads NetworkOutput.features, which some networks only compute on request


OBJECTIVES: dict[str, RegisteredObjective] = {}


def register_objective(name: str, needs_features: bool = False) -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    def decorator(factory: ObjectiveFactory) -> ObjectiveFactory:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} registered twice")
        OBJECTIVES[name] = RegisteredObjective(factory, needs_features)
        return factory

    return decorator


def build_objective(config: ObjectiveConfig) -> Objective:
    return OBJECTIVES[config.name].build(config)


def objective_needs_features(config: ObjectiveConfig) -> bool:
    return OBJECTIVES[config.name].needs_features


def symmetric_kl(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """0.5 * (KL(p_a || p_b) + KL(p_b || p_a)), averaged over the batch."""
    import torch.nn.functional as F

    log_a, log_b = F.log_softmax(logits_a.float(), dim=-1), F.log_softmax(logits_b.float(), dim=-1)
    kl_ab = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")  # KL(a || b)
    kl_ba = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")  # KL(b || a)
    return 0.5 * (kl_ab + kl_ba)


def supervised_contrastive_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """SupCon loss (Khosla et al. 2020, eq. 2, the 'L_out' form).

    For each anchor i with at least one positive: -1/|P(i)| * sum_{p in P(i)} log softmax_i(z_i.z_p / t),
    where the softmax runs over all other examples of the batch. Anchors without positives are skipped.
    """
    import torch
    import torch.nn.functional as F

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


def _cross_entropy(config: ObjectiveConfig, logits: Tensor, labels: Tensor) -> Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)


@register_objective("cross-entropy")
def cross_entropy_objective(config: ObjectiveConfig) -> Objective:
    def plain(network: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        output = network(batch)
        return _cross_entropy(config, output.logits, batch["labels"]), output.logits

    return plain


@register_objective("r-drop")
def rdrop_objective(config: ObjectiveConfig) -> Objective:
    def rdrop(network: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        first, second = network(batch).logits, network(batch).logits
        labels = batch["labels"]
        loss = 0.5 * (_cross_entropy(config, first, labels) + _cross_entropy(config, second, labels))
        return loss + config.rdrop_alpha * symmetric_kl(first, second), first

    return rdrop


@register_objective("supcon", needs_features=True)
def supcon_objective(config: ObjectiveConfig) -> Objective:
    def supcon(network: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        output = network(batch)
        labels = batch["labels"]
        contrastive = supervised_contrastive_loss(output.features, labels, config.supcon_temperature)
        return _cross_entropy(config, output.logits, labels) + config.supcon_weight * contrastive, output.logits

    return supcon
