"""Length-bucketed batching: batches of similar-length examples carry little padding.

PyTorch has no length-grouped sampler (transformers' ``LengthGroupedSampler`` is tied to its Trainer),
so this small one is written here. Shuffling is seeded by (seed, epoch), which makes a resumed run
see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from imdb_sentiment.text.encoder import TextEncoder


class EncodedDataset(Dataset):
    def __init__(self, token_ids: list[list[int]], labels: Sequence[int] | None = None) -> None:
        self.token_ids = token_ids
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": self.token_ids[index]}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.token_ids), dtype=np.int64, count=len(self.token_ids))


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, batch it,
    then shuffle the batch order. Without shuffling, sort everything longest first (evaluation)."""

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucketing: bool = True,
        pool_batches: int = 50,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucketing = bucketing
        self.pool_batches = pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        count = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable") if self.bucketing else np.arange(count)
            yield from (order[i : i + self.batch_size].tolist() for i in range(0, count, self.batch_size))
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(count)
        batches = []
        pool = self.batch_size * self.pool_batches if self.bucketing else count
        for start in range(0, count, pool):
            chunk = order[start : start + pool]
            if self.bucketing:
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        for index in rng.permutation(len(batches)):
            yield batches[index]


def make_loader(
    dataset: EncodedDataset,
    encoder: TextEncoder,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    bucketing: bool = True,
) -> DataLoader:
    sampler = LengthBucketBatchSampler(dataset.lengths, batch_size, shuffle, seed, bucketing)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=encoder.collate)
