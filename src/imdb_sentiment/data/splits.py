"""Seeded, stratified splits and subsamples. The test split is only ever used for the final evaluation.

Subsamples (``data.limit``, ``data.test_limit``) are *nested*: for one seed, the first n reviews of a
single stratified order, so the 256-review subset lies inside the 1,024-review one and a learning curve
adds data instead of drawing a new sample at every size.

Splits carved from a labelled pool (the validation split; the test split of a table without a test
file) split *reviews*, not rows: all copies of a repeated review fall on one side
(:mod:`imdb_sentiment.data.duplicates`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data.dataset import DatasetSplits, TextDataset
from imdb_sentiment.data.duplicates import drop_conflicting_labels, shared_rows, text_groups
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import cache_dir

DATA_ENV = "IMDB_SENTIMENT_DATA"
logger = logging.getLogger("imdb_sentiment.data")


@dataclass
class PreparedData:
    train: TextDataset
    valid: TextDataset
    test: TextDataset
    unsup: TextDataset | None
    raw: DatasetSplits
    # Repeated reviews per labelled pool (DuplicateCounts.as_dict) and "test_rows_in_train" for a given
    # test set; the subsample sizes asked for and used; whether the test set is whole.
    duplicates: dict[str, object] = field(default_factory=dict)
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    full_test_set: bool = True

    @property
    def classes(self) -> LabelSpace:
        """The task's classes (the training split's)."""
        return self.train.classes

    def summary(self) -> dict[str, object]:
        return {
            "source": self.raw.source,
            "format": self.raw.format,
            "classes": self.classes.to_json(),
            "sizes": {"train": len(self.train), "valid": len(self.valid), "test": len(self.test),
                      "unsup": len(self.unsup) if self.unsup else 0},
            "checksums": self.raw.checksums(),
            # Which reviews train and validate (order-independent): an ensemble refuses members whose
            # validation predictions are not held out from the same split.
            "split_digests": {"train": self.train.content_digest(), "valid": self.valid.content_digest()},
            "duplicates": self.duplicates,
            "limits": self.limits,
            "full_test_set": self.full_test_set,
        }  # fmt: skip


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


def _split_indices(labels: np.ndarray, held: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # here: its import is a second of every CLI start

    stratify = _stratify(labels)
    classes = len(np.unique(labels))
    if stratify is not None and min(held, len(labels) - held) < classes:
        stratify = None  # sklearn refuses a stratified side smaller than the number of classes
    kept, chosen = train_test_split(np.arange(len(labels)), test_size=held, stratify=stratify, random_state=seed)
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
    """(kept, held out): about ``fraction`` of the distinct reviews held out, stratified by label, every
    copy of a review on the same side. Without repeats this is a plain stratified split of the rows."""
    groups = text_groups(dataset.texts)
    firsts = np.unique(groups, return_index=True)[1]  # the first row of each review, in group order
    if len(firsts) < 4:
        rows = f" ({len(dataset)} rows)" if len(firsts) < len(dataset) else ""
        raise UserError(f"Only {len(firsts)} distinct labelled examples{rows}: too few to split. Add more data.")
    labels = dataset.labels[firsts]
    classes = len(np.unique(labels))
    held = min(max(math.ceil(fraction * len(firsts)), classes), len(firsts) - classes)
    kept, chosen = _split_indices(labels, held, seed)
    if len(firsts) < len(dataset):  # map reviews back to all their rows
        kept, chosen = np.flatnonzero(np.isin(groups, kept)), np.flatnonzero(np.isin(groups, chosen))
    return dataset.subset(kept), dataset.subset(chosen)


def _stratify(labels: np.ndarray) -> np.ndarray | None:
    counts = np.bincount(labels[labels >= 0], minlength=2)
    return labels if counts.min() >= 2 else None


def _warn(message: str) -> None:
    """Once per run: under a launcher every rank prepares the same data, and rank 0 speaks for all."""
    if int(os.environ.get("RANK", "0")) == 0:
        logger.warning(message)


def _audit(name: str, dataset: TextDataset) -> tuple[TextDataset, dict[str, int]]:
    kept, counts = drop_conflicting_labels(dataset)
    if counts.repeated_rows:
        _warn(
            f"{name}: {counts.repeated_rows:,} repeated review(s) ({counts.repeated_texts:,} text(s) appear more "
            "than once); every copy of a review stays on one side of each split (counts in data.json)."
        )
    if counts.conflicting_texts:
        _warn(
            f"{name}: {counts.conflicting_texts:,} text(s) carry both labels; dropped all {counts.dropped_rows:,} "
            "of their rows, since a review cannot be both (counts in data.json)."
        )
    return kept, counts.as_dict()


def _limit(name: str, option: str, dataset: TextDataset, limit: int | None, seed: int) -> tuple[TextDataset, dict]:
    if not limit:
        return dataset, {}
    if limit > len(dataset):
        _warn(f"{option} {limit:,} is above the {len(dataset):,} {name} reviews: all {len(dataset):,} used "
              "(recorded in data.json).")  # fmt: skip
    sample = stratified_sample(dataset, limit, seed)
    return sample, {"asked": limit, "used": len(sample), "available": len(dataset)}


def _every_class_trains(train: TextDataset, raw: DatasetSplits, spec: DataConfig, limited: bool) -> None:
    """Every class keeps a training review (the models may assume all K are seen), or one line saying
    why not: data.labels lists a label the data never uses, data.limit is too small, or a class has so
    few reviews that the test / validation splits took them all."""
    absent = [name for index, name in enumerate(train.classes.names) if not (train.labels == index).any()]
    if not absent:
        return
    shown = ", ".join(map(repr, absent[:5]))
    unused = raw.train is not None and not any((raw.train.labels == train.classes.names.index(name)).any()
                                                for name in absent)  # fmt: skip
    if spec.labels is not None and unused:
        raise UserError(f"{raw.source}: no training review has the label(s) {shown}; drop them from data.labels "
                        "or add examples.")  # fmt: skip
    if limited and spec.limit:
        raise UserError(f"data.limit: {spec.limit} reviews leave no training review for class(es) {shown} "
                        "after the validation split; raise it.")  # fmt: skip
    raise UserError(f"{raw.source}: class(es) {shown} have too few reviews to keep one for training after the "
                    "test and validation splits; add reviews of them or drop their rows.")  # fmt: skip


def prepare_splits(raw: DatasetSplits, spec: DataConfig) -> PreparedData:
    """Carve validation (and, for a single table, test) splits; apply limits; all seeded by ``spec.seed``."""
    seed = spec.seed
    if raw.train is None:
        raise UserError(f"{raw.source} has no training split; use it with 'evaluate' instead.")
    carve_test = raw.test is None or raw.test is raw.train
    train, train_counts = _audit("train", raw.train)
    duplicates: dict[str, object] = {"train": train_counts}
    if carve_test:
        train, test = stratified_split(train, spec.test_fraction, seed)
    else:
        test, duplicates["test"] = _audit("test", raw.test)
        overlap = duplicates["test_rows_in_train"] = shared_rows(test, train)
        if overlap:
            _warn(f"test: {overlap:,} review(s) also appear in train; the given test set overlaps the "
                  "training data (count in data.json).")  # fmt: skip
    counts = np.bincount(train.labels[train.labels >= 0], minlength=train.classes.size)
    if (counts > 0).sum() < 2:
        raise UserError(f"{raw.source}: the training data holds one class only; two or more are needed.")
    _every_class_trains(train, raw, spec, limited=False)
    train, train_limit = _limit("training", "data.limit", train, spec.limit, seed)
    test_size = len(test)
    test, test_limit = _limit("test", "data.test_limit", test, spec.test_limit, seed)
    limits = {name: used for name, used in (("limit", train_limit), ("test_limit", test_limit)) if used}
    train, valid = stratified_split(train, spec.valid_fraction, seed)
    _every_class_trains(train, raw, spec, limited=True)
    unsup = raw.unsup if spec.use_unsup else None
    return PreparedData(train=train, valid=valid, test=test, unsup=unsup, raw=raw, duplicates=duplicates,
                        limits=limits, full_test_set=len(test) == test_size)  # fmt: skip


def load_data(spec: DataConfig) -> PreparedData:
    from imdb_sentiment.data.loaders import read_dataset

    return prepare_splits(read_dataset(resolve_data_path(spec.path), spec), spec)


def evaluation_split(
    splits: DatasetSplits, spec: DataConfig, run_data_file: Path | None = None
) -> tuple[TextDataset, str, str | None]:
    """What ``evaluate RUN --data X`` scores: (reviews, split name, a note to show loudly or None).

    - X's test split, when it has one;
    - X is the run's own training data (its train content matches the run's ``data.json``): the
      held-out test split the run carved from it (same seed, same fraction: reviews it never trained
      on), with a note saying so; refused when the run had a separate test file, since then every
      review of X was trained or validated on;
    - a plain labelled table (CSV / TSV / JSONL / Parquet file): all of it, an evaluation set by design;
    - any other layout with training reviews only: refused, in one line (they may be the reviews the
      run trained on, and their accuracy would say nothing).
    """
    if splits.test is not None:
        return splits.test, "test", None
    assert splits.train is not None
    recorded = _read_run_checksums(run_data_file)
    source = splits.source or "the data"
    if recorded.get("train.content_sha256") == splits.train.content_digest():
        if "test.content_sha256" in recorded:
            raise UserError(
                f"{source} is the data this run trained on (its test set came from a separate file): "
                "leave --data out to evaluate on the run's own test split."
            )
        held_out = prepare_splits(splits, spec).test
        note = (
            f"{source} has no test split and is this run's training data: evaluated on the "
            f"{len(held_out):,} reviews it held out as its test split (data.seed {spec.seed}, "
            f"test_fraction {spec.test_fraction}), which it never trained on."
        )
        return held_out, "held-out", note
    if splits.format == "table":
        return splits.train, "all", None
    raise UserError(
        f"{source} has training reviews only (no test split): this run may have trained on them, so their "
        "accuracy would mean nothing. Point --data at data with a test split or at a labelled table "
        "(CSV / TSV / JSONL / Parquet file), or leave --data out to use the run's own test split."
    )


def _read_run_checksums(path: Path | None) -> dict[str, str]:
    """The content checksums a run's data.json recorded; none for a run without a readable one."""
    import json

    try:
        checksums = json.loads(path.read_text(encoding="utf-8")).get("checksums") if path else None
    except (OSError, ValueError, AttributeError):
        return {}
    return checksums if isinstance(checksums, dict) else {}
