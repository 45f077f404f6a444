"""Nested, stratified, seeded subsamples (learning curves) and the separate data seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.splits import nested_stratified_order, prepare_splits, stratified_sample
from imdb_sentiment.models.configure import configure


def imbalanced(size: int = 1000, positive_share: float = 0.3) -> TextDataset:
    labels = (np.arange(size) < int(size * positive_share)).astype(int)
    return TextDataset([f"review {i}" for i in range(size)], labels)


def test_every_prefix_of_the_order_is_stratified() -> None:
    labels = imbalanced().labels
    order = nested_stratified_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(len(labels)))  # a permutation
    positives = np.cumsum(labels[order])
    for size in range(1, len(labels) + 1):
        assert abs(positives[size - 1] - 0.3 * size) <= 1.0, size


def test_subsamples_are_nested_across_sizes_and_differ_across_seeds() -> None:
    data = imbalanced()
    sizes = [16, 64, 256, 900]
    subsets = [set(stratified_sample(data, size, seed=7).ids) for size in sizes]
    for smaller, larger in itertools.pairwise(subsets):
        assert smaller < larger
    for size, subset in zip(sizes, subsets, strict=True):
        sample = stratified_sample(data, size, seed=7)
        assert len(subset) == size
        assert abs(sample.labels.mean() - 0.3) <= 1 / size + 1e-9
    assert set(stratified_sample(data, 64, seed=8).ids) != subsets[1]
    assert set(stratified_sample(data, 64, seed=7).ids) == subsets[1]  # seeded: reproducible


def test_data_seed_defaults_to_seed_and_can_vary_alone() -> None:
    assert configure({"seed": 5}).data.seed == 5
    config = configure({"seed": 5, "data": {"seed": 11}})
    assert (config.seed, config.data.seed) == (5, 11)


def test_data_seed_alone_decides_the_validation_split_and_limit(tmp_path) -> None:
    from imdb_sentiment.data.dataset import DatasetSplits

    train = imbalanced(200, 0.5)
    raw = DatasetSplits(train=train, test=imbalanced(40, 0.5))

    def carve(seed: int) -> tuple[list[str], list[str]]:
        prepared = prepare_splits(raw, DataConfig(seed=seed, limit=100))
        return prepared.train.ids, prepared.valid.ids

    assert carve(1) == carve(1)
    assert carve(1) != carve(2)
    small = prepare_splits(raw, DataConfig(seed=1, limit=50))
    large = prepare_splits(raw, DataConfig(seed=1, limit=100))
    assert set(small.train.ids) | set(small.valid.ids) <= set(large.train.ids) | set(large.valid.ids)


@pytest.mark.parametrize("limit", [4, 10])
def test_tiny_subsamples_keep_both_classes(limit: int) -> None:
    assert set(stratified_sample(imbalanced(100, 0.5), limit, seed=0).labels.tolist()) == {0, 1}


def test_without_repeated_reviews_the_split_is_the_plain_stratified_row_split() -> None:
    """Splitting by review changes nothing for data without repeats: earlier runs' splits still hold."""
    from sklearn.model_selection import train_test_split

    from imdb_sentiment.data.splits import stratified_split

    data = imbalanced(500, 0.3)
    kept, held = stratified_split(data, 0.2, seed=9)
    expected_kept, expected_held = train_test_split(
        np.arange(500), test_size=100, stratify=data.labels, random_state=9
    )
    assert kept.ids == [str(i) for i in sorted(expected_kept)]
    assert held.ids == [str(i) for i in sorted(expected_held)]


def test_nested_limits_and_stratification_hold_with_repeated_reviews() -> None:
    from imdb_sentiment.data.dataset import DatasetSplits

    base = imbalanced(400, 0.3)
    rows = np.concatenate([np.arange(400), np.arange(0, 400, 4)])  # a quarter of the reviews twice
    data = TextDataset([base.texts[i] for i in rows], base.labels[rows], [f"r{j}" for j in range(len(rows))])
    raw = DatasetSplits(train=data, test=None)
    small, large = (prepare_splits(raw, DataConfig(seed=2, limit=limit)) for limit in (100, 300))
    assert small.test.ids == large.test.ids  # the held-out test split does not depend on the limit
    assert set(small.train.ids) | set(small.valid.ids) <= set(large.train.ids) | set(large.valid.ids)
    for part in (small.train, large.train, large.test):
        assert abs(part.labels.mean() - 0.3) < 0.06
    assert not set(large.train.texts) & set(large.test.texts)
    assert not set(large.train.texts) & set(large.valid.texts)
