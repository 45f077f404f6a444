"""Length-bucketed batching: batches of similar-length examples carry little padding.

PyTorch has no length-grouped sampler (transformers' ``LengthGroupedSampler`` is tied to its Trainer),
so this small one is written here. Shuffling is seeded by (seed, epoch), which makes a resumed run
see exactly the batches an uninterrupted run would, from the batch it stopped at (``set_epoch``'s
``start_batch``).

Distributed (``world_size`` > 1): every rank draws the same batches, and rank r takes every
``world_size``-th example of each, so ``batch_size`` stays the global batch and a config trains the
same way on any number of processes (torch's ``DistributedSampler`` shards examples and cannot keep
length buckets). Training batches too small to give every rank an example repeat their last example
on the ranks left over (every rank must take each step); evaluation never repeats or drops one.
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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucketing = bucketing
        self.pool_batches = pool_batches
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Draw the batches of ``epoch``, skipping the first ``start_batch`` (a mid-epoch resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        """Batches in a whole epoch (``start_batch`` is not subtracted)."""
        if self.shuffle or self.world_size == 1:
            return (len(self.lengths) + self.batch_size - 1) // self.batch_size
        return sum(1 for batch in self._global_batches() if len(batch[self.rank :: self.world_size]))

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches()[self.start_batch :]:
            if self.world_size > 1:
                share = batch[self.rank :: self.world_size]
                if not len(share):
                    if not self.shuffle:
                        continue
                    share = batch[-1:]
                batch = share
            yield batch.tolist()

    def _global_batches(self) -> list[np.ndarray]:
        count = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable") if self.bucketing else np.arange(count)
            return [order[i : i + self.batch_size] for i in range(0, count, self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(count)
        batches = []
        pool = self.batch_size * self.pool_batches if self.bucketing else count
        for start in range(0, count, pool):
            chunk = order[start : start + pool]
            if self.bucketing:
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        return [batches[index] for index in rng.permutation(len(batches))]


class FlatLengthBucketSampler(Sampler[int]):
    """The batch sampler's order, one index at a time, for loaders that cut the batches themselves
    (Hugging Face Trainer). Seeded by (seed, epoch) like it, unlike transformers' LengthGroupedSampler,
    which draws from the global RNG when an epoch starts: a Trainer resumed inside an epoch would see
    another order for it."""

    def __init__(self, batches: LengthBucketBatchSampler) -> None:
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches.lengths)

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches:
            yield from batch


def make_loader(
    dataset: EncodedDataset,
    encoder: TextEncoder,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    bucketing: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    sampler = LengthBucketBatchSampler(
        dataset.lengths, batch_size, shuffle, seed, bucketing, rank=rank, world_size=world_size
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=encoder.collate)
