"""R-Drop's symmetric KL and the supervised contrastive loss against hand computations, and every
objective taking real optimizer steps through the shared loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from imdb_sentiment.config import ObjectiveConfig, TrainingConfig
from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.training.batching import EncodedDataset, make_loader
from imdb_sentiment.training.loop import Trainer
from imdb_sentiment.training.objectives import (
    build_objective,
    supervised_contrastive_loss,
    symmetric_kl,
)
from imdb_sentiment.training.outputs import NetworkOutput


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(value) for value in row]
    return [value / sum(exps) for value in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


# ------------------------------------------------------------------------------------------ R-Drop
def test_symmetric_kl_matches_hand_computation() -> None:
    a = [[1.0, 0.0], [0.0, 2.0], [0.3, -0.3]]
    b = [[0.0, 1.0], [0.5, 0.5], [0.3, -0.3]]
    per_example = [
        0.5 * (kl(softmax(x), softmax(y)) + kl(softmax(y), softmax(x))) for x, y in zip(a, b, strict=True)
    ]
    expected = sum(per_example) / len(per_example)  # batch mean
    # First row by hand: p = (0.7311, 0.2689), q = (0.2689, 0.7311); KL both ways = 0.4621 * ln(2.7183) = 0.4621.
    assert per_example[0] == pytest.approx(0.46212, abs=1e-4)
    assert per_example[2] == 0.0
    got = symmetric_kl(torch.tensor(a), torch.tensor(b))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert symmetric_kl(torch.tensor(b), torch.tensor(a)).item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------------------- SupCon
def supcon_by_hand(features: list[list[float]], labels: list[int], temperature: float) -> float:
    """Khosla et al. (2020) eq. 2, written as loops over anchors i, positives p and others a != i."""
    z = [np.asarray(f) / np.linalg.norm(f) for f in features]
    losses = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue  # an anchor without positives contributes nothing
        denominator = sum(math.exp(z[i] @ z[a] / temperature) for a in range(len(z)) if a != i)
        terms = [math.log(math.exp(z[i] @ z[p] / temperature) / denominator) for p in positives]
        losses.append(-sum(terms) / len(positives))
    return sum(losses) / len(losses)


def test_supcon_matches_hand_computation() -> None:
    features = [[1.0, 0.0], [2.0, 0.5], [0.0, 1.0], [-1.0, 1.0]]
    labels = [0, 0, 1, 2]  # anchors 2 and 3 have no positive: only anchors 0 and 1 count
    t = 0.5
    z = [np.asarray(f) / np.linalg.norm(f) for f in features]  # z1 = (0.970, 0.243), z3 = (-0.707, 0.707)
    s = {(i, j): float(z[i] @ z[j]) / t for i in range(4) for j in range(4)}
    anchor0 = -math.log(math.exp(s[0, 1]) / (math.exp(s[0, 1]) + math.exp(s[0, 2]) + math.exp(s[0, 3])))
    anchor1 = -math.log(math.exp(s[1, 0]) / (math.exp(s[1, 0]) + math.exp(s[1, 2]) + math.exp(s[1, 3])))
    expected = (anchor0 + anchor1) / 2
    assert supcon_by_hand(features, labels, t) == pytest.approx(expected, rel=1e-12)
    got = supervised_contrastive_loss(torch.tensor(features), torch.tensor(labels), t)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_supcon_three_of_a_class_and_scale_invariance() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 4))
    labels = [1, 0, 1, 1, 0, 2]
    expected = supcon_by_hand(features.tolist(), labels, temperature=0.1)
    tensor = torch.tensor(features, dtype=torch.float32, requires_grad=True)
    got = supervised_contrastive_loss(tensor, torch.tensor(labels), 0.1)
    assert got.item() == pytest.approx(expected, rel=1e-4)
    got.backward()
    assert torch.isfinite(tensor.grad).all()  # the -inf self-similarities leak no NaN into gradients
    scaled = supervised_contrastive_loss(
        torch.tensor(features * 7.0, dtype=torch.float32), torch.tensor(labels), 0.1
    )
    assert scaled.item() == pytest.approx(got.item(), rel=1e-5)


def test_supcon_without_any_positive_is_zero_but_differentiable() -> None:
    features = torch.randn(3, 4, requires_grad=True)
    loss = supervised_contrastive_loss(features, torch.tensor([0, 1, 2]), 0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert features.grad is not None


# ---------------------------------------------------------------------------- through the real loop
class Ids(TextEncoder):
    def encode(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def save(self, directory) -> None:
        raise NotImplementedError


class BagOfTokens(nn.Module):
    """Mean token embedding -> dropout -> linear; features are the pooled embedding."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 8, padding_idx=0)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(8, classes)

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (self.embedding(batch["input_ids"]) * mask).sum(1) / mask.sum(1)
        return NetworkOutput(logits=self.head(self.dropout(pooled)), features=pooled)


@pytest.mark.parametrize("name", ["cross-entropy", "r-drop", "supcon"])
def test_each_objective_trains_through_the_loop(name: str) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    # Token 1 marks positives, token 2 negatives, amid filler tokens 3..19.
    ids = [[1 + int(1 - label), *rng.integers(3, 20, size=int(rng.integers(2, 8))).tolist()] for label in labels]
    data = EncodedDataset(ids, labels)
    network = BagOfTokens()
    before = [p.detach().clone() for p in network.parameters()]
    config = TrainingConfig(epochs=6, batch_size=8, learning_rate=0.05, threads=1, early_stopping_patience=None,
                            objective=ObjectiveConfig(name=name))  # fmt: skip
    trainer = Trainer(network, config, show_progress=False)
    result = trainer.fit(make_loader(data, Ids(), 8, True, seed=0), make_loader(data, Ids(), 16, False))
    assert result.steps == 24
    assert all(math.isfinite(epoch["train_loss"]) for epoch in result.history)
    assert any(not torch.equal(b, p) for b, p in zip(before, network.parameters(), strict=True))
    assert result.history[-1]["valid_accuracy"] >= 0.8  # the cue token is learnable


@pytest.mark.parametrize("name", ["r-drop", "supcon"])
def test_each_objective_trains_three_classes_through_the_loop(name: str) -> None:
    """Nothing in an objective assumes two classes: R-Drop's KL and SupCon's positives (same label)
    over three, through the loop's validation (loss, accuracy over the three logits)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = np.arange(48) % 3
    # Token 1 + label is each class's cue, amid filler tokens 4..19.
    ids = [[1 + int(label), *rng.integers(4, 20, size=int(rng.integers(2, 8))).tolist()] for label in labels]
    data = EncodedDataset(ids, labels)
    network = BagOfTokens(classes=3)
    config = TrainingConfig(epochs=8, batch_size=8, learning_rate=0.05, threads=1, early_stopping_patience=None,
                            objective=ObjectiveConfig(name=name))  # fmt: skip
    trainer = Trainer(network, config, show_progress=False)
    result = trainer.fit(make_loader(data, Ids(), 8, True, seed=0), make_loader(data, Ids(), 16, False))
    assert all(
        math.isfinite(epoch["train_loss"]) and math.isfinite(epoch["valid_loss"]) for epoch in result.history
    )
    assert result.history[-1]["valid_accuracy"] >= 0.8  # every class's cue is learnt, not two of them


def test_rdrop_loss_is_ce_plus_alpha_kl() -> None:
    torch.manual_seed(0)
    network = BagOfTokens().train()
    batch = {"input_ids": torch.tensor([[1, 3, 4], [2, 5, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
             "labels": torch.tensor([1, 0])}  # fmt: skip
    torch.manual_seed(1)
    loss, _ = build_objective(ObjectiveConfig(name="r-drop", rdrop_alpha=2.0))(network, batch)
    torch.manual_seed(1)  # replay the same two dropout masks
    first, second = network(batch).logits, network(batch).logits
    ce = 0.5 * (
        nn.functional.cross_entropy(first, batch["labels"]) + nn.functional.cross_entropy(second, batch["labels"])
    )
    assert loss.item() == pytest.approx((ce + 2.0 * symmetric_kl(first, second)).item(), rel=1e-5)
