"""Seeded, stratified splits and subsamples. The test split is only ever used for the final evaluation.

Subsamples (``data.limit``, ``data.test_limit``) are *nested*: for one seed, the first n reviews of a
single stratified order, so the 256-review subset lies inside the 1,024-review one and a learning curve
adds data instead of drawing a new sample at every size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data.dataset import DatasetSplits, TextDataset
from imdb_sentiment.errors import UserError

DATA_ENV = "IMDB_SENTIMENT_DATA"


@dataclass
class PreparedData:
    train: TextDataset
    valid: TextDataset
    test: TextDataset
    unsup: TextDataset | None
    raw: DatasetSplits

    def summary(self) -> dict[str, object]:
        return {
            "source": self.raw.source,
            "format": self.raw.format,
            "sizes": {"train": len(self.train), "valid": len(self.valid), "test": len(self.test),
                      "unsup": len(self.unsup) if self.unsup else 0},
            "checksums": self.raw.checksums(),
            # Which reviews train and validate (order-independent): an ensemble refuses members whose
            # validation predictions are not held out from the same split.
            "split_digests": {"train": self.train.content_digest(), "valid": self.valid.content_digest()},
        }  # fmt: skip


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imdb-sentiment"


def resolve_data_path(path: str | Path | None) -> Path:
    """--data, else $IMDB_SENTIMENT_DATA, else the download cache."""
    if path:
        return Path(path).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cached = cache_dir() / "aclImdb_v1.tar.gz"
    if cached.exists():
        return cached
    raise UserError(
        "No dataset given and none cached. Run 'imdb-sentiment data download' (needs internet), "
        f"or point --data (or ${DATA_ENV}) at a copy: an aclImdb folder, aclImdb_v1.tar.gz, "
        "a Parquet folder or the Kaggle TSV files."
    )


def _split_indices(dataset: TextDataset, held: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    stratify = _stratify(dataset)
    classes = len(np.unique(dataset.labels))
    if stratify is not None and min(held, len(dataset) - held) < classes:
        stratify = None  # sklearn refuses a stratified side smaller than the number of classes
    kept, chosen = train_test_split(np.arange(len(dataset)), test_size=held, stratify=stratify, random_state=seed)
    return np.sort(kept), np.sort(chosen)


def nested_stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of all indices whose every prefix is stratified (each class within one example
    of its share). Each class is shuffled, its k-th member gets the key (k + 0.5) / class size, and all
    are sorted by key: a class spreads evenly over the order. Ties break by a seeded random draw."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keys = np.empty(len(labels), dtype=np.float64)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((rng.random(len(labels)), keys))


def stratified_sample(dataset: TextDataset, size: int, seed: int) -> TextDataset:
    """The first ``size`` reviews of :func:`nested_stratified_order`, in dataset order."""
    if size >= len(dataset):
        return dataset
    return dataset.subset(np.sort(nested_stratified_order(dataset.labels, seed)[:size]))


def stratified_split(dataset: TextDataset, fraction: float, seed: int) -> tuple[TextDataset, TextDataset]:
    if len(dataset) < 4:
        raise UserError(f"Only {len(dataset)} labelled examples: too few to split. Add more data.")
    classes = len(np.unique(dataset.labels))
    held = min(max(math.ceil(fraction * len(dataset)), classes), len(dataset) - classes)
    kept, chosen = _split_indices(dataset, held, seed)
    return dataset.subset(kept), dataset.subset(chosen)


def _stratify(dataset: TextDataset) -> np.ndarray | None:
    counts = np.bincount(dataset.labels[dataset.labels >= 0], minlength=2)
    return dataset.labels if counts.min() >= 2 else None


def prepare_splits(raw: DatasetSplits, spec: DataConfig) -> PreparedData:
    """Carve validation (and, for a single table, test) splits; apply limits; all seeded by ``spec.seed``."""
    seed = spec.seed
    if raw.train is None:
        raise UserError(f"{raw.source} has no training split; use it with 'evaluate' instead.")
    train, test = raw.train, raw.test
    if test is None or test is train:
        train, test = stratified_split(train, spec.test_fraction, seed)
    if len(np.unique(train.labels)) < 2:
        raise UserError(f"{raw.source}: the training data holds one class only; both are needed.")
    if spec.limit:
        train = stratified_sample(train, spec.limit, seed)
    if spec.test_limit:
        test = stratified_sample(test, spec.test_limit, seed)
    train, valid = stratified_split(train, spec.valid_fraction, seed)
    unsup = raw.unsup if spec.use_unsup else None
    return PreparedData(train=train, valid=valid, test=test, unsup=unsup, raw=raw)


def load_data(spec: DataConfig) -> PreparedData:
    from imdb_sentiment.data.loaders import read_dataset

    return prepare_splits(read_dataset(resolve_data_path(spec.path), spec), spec)
