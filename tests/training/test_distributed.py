"""Distributed training: the length-bucketed sampler's shards, and 2 CPU processes (gloo) launched
with torchrun against 1 process on the same data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import write_tiny_parquet_imdb

from imdb_sentiment.config import build_config, dump_config, load_config
from imdb_sentiment.pipelines.experiment import run_experiment
from imdb_sentiment.training.batching import LengthBucketBatchSampler


def shards(
    count: int, batch_size: int, shuffle: bool, epoch: int = 0, world_size: int = 2
) -> list[list[list[int]]]:
    lengths = np.random.default_rng(0).integers(1, 50, size=count)
    ranks = []
    for rank in range(world_size):
        sampler = LengthBucketBatchSampler(lengths, batch_size, shuffle, seed=3, pool_batches=2, rank=rank,
                                           world_size=world_size)  # fmt: skip
        sampler.set_epoch(epoch)
        ranks.append(list(sampler))
        assert len(sampler) == len(ranks[-1])
    return ranks


def test_training_shards_are_distinct_complete_and_in_step() -> None:
    for epoch in (0, 1):
        first, second = shards(40, 8, shuffle=True, epoch=epoch)
        assert len(first) == len(second) == 5  # every rank takes every step
        taken = [index for batch in first + second for index in batch]
        assert sorted(taken) == list(range(40))  # distinct samples, none dropped
    assert shards(40, 8, True, epoch=0) != shards(40, 8, True, epoch=1)  # reshuffled each epoch
    assert shards(40, 8, True, epoch=1) == shards(40, 8, True, epoch=1)  # the same way on every rank
    single = shards(40, 8, True, epoch=1, world_size=1)[0]
    first, second = shards(40, 8, True, epoch=1)
    assert [sorted(a + b) for a, b in zip(first, second, strict=True)] == [
        sorted(batch) for batch in single
    ]  # one global batch


def test_a_training_batch_too_small_to_share_repeats_an_example_so_every_rank_steps() -> None:
    first, second = shards(9, 4, shuffle=True)  # batches of 4, 4 and 1 example(s)
    assert len(first) == len(second) == 3
    taken = [index for batch in first + second for index in batch]
    assert set(taken) == set(range(9)) and len(taken) == 10  # the lone example on both ranks


def test_evaluation_shards_cover_every_example_once() -> None:
    first, second = shards(9, 4, shuffle=False)  # the last batch holds one example: rank 1 gets none
    taken = [index for batch in first + second for index in batch]
    assert sorted(taken) == list(range(9))
    assert len(first) == 3 and len(second) == 2


def test_a_resumed_epoch_skips_exactly_the_batches_taken() -> None:
    lengths = np.arange(1, 30)
    sampler = LengthBucketBatchSampler(lengths, 4, shuffle=True, seed=1)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, start_batch=3)
    assert list(sampler) == whole[3:]


TINY_FASTTEXT = ["model.name=fasttext", "model.params.embedding_dim=8", "model.params.buckets=64",
                 "model.params.min_freq=1", "training.batch_size=8", "training.epochs=3",
                 "training.learning_rate=0.05", "training.early_stopping_patience=null", "training.threads=1"]  # fmt: skip


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_gloo_processes_train_like_one(tmp_path) -> None:
    """fastText is padding-invariant (EmbeddingBag mean) and batch_size is the global batch, so 2 ranks
    taking half of each batch follow one process up to float rounding: the stated tolerance is 1e-4
    on losses and weights, and equal accuracy."""
    write_tiny_parquet_imdb(tmp_path / "data", size=80)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(dump_config(build_config({}, [f"data.path={json.dumps(str(tmp_path / 'data'))}",
                                                         *TINY_FASTTEXT])))  # fmt: skip
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "imdb_sentiment.cli", "train", str(config_file), "--output-dir", str(tmp_path / "ddp"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = run_experiment(load_config(str(config_file), [f"output_dir={json.dumps(str(tmp_path / 'one'))}"]),
                            show_progress=False)  # fmt: skip

    (run_dir,) = (tmp_path / "ddp").iterdir()  # the run folder is written once, by rank 0
    assert json.loads((run_dir / "run.json").read_text())["processes"] == 2
    assert (run_dir / "train.log").read_text().count("test accuracy") == 1
    assert launched.stdout.count("Run folder:") == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["details"]["distributed"] == {"world_size": 2, "weights_identical_across_ranks": True}
    assert metrics["examples"] == 80  # every test review predicted once across the ranks
    assert metrics["details"]["optimizer_steps"] == single.metrics["details"]["optimizer_steps"]
    assert metrics["accuracy"] == single.metrics["accuracy"]
    assert metrics["roc_auc"] == pytest.approx(single.metrics["roc_auc"], abs=1e-4)
    import pandas as pd

    history = pd.read_csv(run_dir / "history.csv")
    expected = pd.DataFrame(single.model.fit_result.history)
    for column in ("train_loss", "valid_loss", "valid_accuracy"):
        np.testing.assert_allclose(history[column], expected[column], atol=1e-4)
    weights = torch.load(run_dir / "model" / "network.pt", weights_only=True)
    for name, value in single.model.network.state_dict().items():
        torch.testing.assert_close(weights[name], value, atol=1e-4, rtol=0)
