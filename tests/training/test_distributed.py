"""Distributed training: the length-bucketed sampler's shards, and 2 CPU processes (gloo) launched
with torchrun or accelerate against 1 process on the same data, both training backends, and
pre-emption (SIGTERM reaching the ranks at different moments, then --resume under the launcher)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_reviews, write_tiny_parquet_imdb

from imdb_sentiment.config import dump_config
from imdb_sentiment.models.configure import configure, load_config
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


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
    # --multi_gpu picks accelerate's torchrun-based launcher; without CUDA the processes use gloo.
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
}  # fmt: skip


def launch(*arguments: str, launcher: str = "torchrun") -> list[str]:
    """``imdb-sentiment train ARGUMENTS`` in 2 gloo processes started by a launcher."""
    return [*LAUNCHERS[launcher], "-m", "imdb_sentiment.cli", "train", *arguments, "--quiet"]


TINY_FASTTEXT = ["model.name=fasttext", "model.params.embedding_dim=8", "model.params.buckets=64",
                 "model.params.min_freq=1", "training.batch_size=8", "training.epochs=3",
                 "training.learning_rate=0.05", "training.early_stopping_patience=null", "training.threads=1"]  # fmt: skip


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_gloo_processes_train_like_one(tmp_path, launcher) -> None:
    """fastText is padding-invariant (EmbeddingBag mean) and batch_size is the global batch, so 2 ranks
    taking half of each batch follow one process up to float rounding: the stated tolerance is 1e-4
    on losses and weights, and equal accuracy."""
    write_tiny_parquet_imdb(tmp_path / "data", size=80)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(dump_config(configure({}, [f"data.path={json.dumps(str(tmp_path / 'data'))}",
                                                         *TINY_FASTTEXT])))  # fmt: skip
    launched = subprocess.run(launch(str(config_file), "--output-dir", str(tmp_path / "ddp"), launcher=launcher),
                              capture_output=True, text=True, timeout=300)  # fmt: skip
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
    history = pd.read_csv(run_dir / "history.csv")
    expected = pd.DataFrame(single.model.fit_result.history)
    for column in ("train_loss", "valid_loss", "valid_accuracy"):
        np.testing.assert_allclose(history[column], expected[column], atol=1e-4)
    weights = torch.load(run_dir / "model" / "network.pt", weights_only=True)
    for name, value in single.model.network.state_dict().items():
        torch.testing.assert_close(weights[name], value, atol=1e-4, rtol=0)


def ranks_of(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of the worker processes a launcher started (its children, by their RANK)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    ranks = {}
    for pid in map(int, children):
        for variable in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if variable.startswith(b"RANK="):
                ranks[int(variable.removeprefix(b"RANK="))] = pid
    return ranks


def open_when_read(fifo: Path, process: subprocess.Popen, deadline: float) -> int:
    """The FIFO opened for writing once a reader opened it (the reader then waits for what we write)."""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: nobody reads it yet
            if exc.errno != errno.ENXIO:
                raise
        time.sleep(0.02)
    raise AssertionError(f"nobody read {fifo.name} (launcher exit code {process.poll()})")


def wait_until_blocked(pid: int, deadline: float) -> None:
    """Until the main thread of ``pid`` sleeps and takes no CPU time over 0.2 s: it waits for a peer."""

    def sample() -> tuple[str, int]:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[11]) + int(fields[12])  # state, utime + stime

    previous = sample()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = sample()
        if current[0] == previous[0] == "S" and current[1] == previous[1]:
            return
        previous = current
    raise AssertionError(f"process {pid} never waited")


def wait_for_text(path: Path, text: str, seconds: float) -> None:
    """Until ``text`` is in the file; fails after ``seconds`` (torchrun's log line changed: the moment the
    test sets up would be lost, and it could pass on the old code)."""
    deadline = time.monotonic() + seconds
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path.name}"
        time.sleep(0.02)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs a Linux /proc")
def test_sigterm_reaching_the_ranks_at_different_moments_under_torchrun_checkpoints_and_a_resume_ends_like_no_stop(
    tmp_path,
) -> None:
    """How a cluster pre-empts a distributed job: SIGTERM to the launcher, which passes it to its workers
    one after another. One rank's SIGTERM is enough: they agree on the step to stop after, rank 0 writes
    the checkpoint, and the same launcher with --resume ends with the predictions of a 2-process run that
    was never stopped, byte for byte.

    The moment that made this test flaky on a loaded machine is made certain: rank 0 receives SIGTERM
    first and is held reading run.json (a FIFO in its place) before it records the stop, while rank 1,
    stopped with it, waits for it at the teardown barrier; only then is torchrun signalled, so rank 1's
    own SIGTERM comes after its run is over (and rank 0 gets a second one). It used to kill rank 1 there,
    and rank 0's barrier failed with a traceback instead of the resume line."""
    write_tiny_parquet_imdb(tmp_path / "data", size=80)
    config_file = tmp_path / "tiny.yaml"
    settings = [f"data.path={json.dumps(str(tmp_path / 'data'))}", *TINY_FASTTEXT, "training.epochs=12",
                "training.checkpoint_every_steps=1"]  # fmt: skip
    config_file.write_text(dump_config(configure({}, settings)))
    reference_runs, stopped_runs = tmp_path / "reference", tmp_path / "stopped"
    stopped_log = tmp_path / "stopped.err"
    # Side by side: the uninterrupted run and the one we stop.
    reference = subprocess.Popen(launch(str(config_file), "--output-dir", str(reference_runs)),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    with stopped_log.open("w") as log:
        stopped = subprocess.Popen(launch(str(config_file), "--output-dir", str(stopped_runs)),
                                   stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    deadline = time.monotonic() + 180
    while not list(stopped_runs.glob("*/checkpoints/last.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (run_dir,) = stopped_runs.iterdir()
    status_file, ranks = run_dir / "run.json", ranks_of(stopped)
    recorded = status_file.read_bytes()
    status_file.unlink()
    os.mkfifo(status_file)  # rank 0 reads run.json before recording "preempted" in it
    os.kill(ranks[0], signal.SIGTERM)
    fifo = open_when_read(status_file, stopped, deadline)  # rank 0 stopped: so did rank 1, after that step
    try:
        wait_until_blocked(ranks[1], deadline)  # rank 1 waits for rank 0 at the teardown barrier
        stopped.send_signal(signal.SIGTERM)
        # torchrun logs each worker it signals (rank 0's second SIGTERM, then rank 1's first): give it time
        # to reach rank 1, which it used to kill there.
        wait_for_text(stopped_log, f"Sending process {ranks[1]} closing signal SIGTERM", seconds=10)
        time.sleep(0.3)
        os.write(fifo, recorded)
    finally:
        os.close(fifo)
    stopped.wait(timeout=180)
    _, reference_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, reference_err[-3000:]

    err = stopped_log.read_text()
    run = json.loads(status_file.read_text())
    assert run["status"] == "preempted", err[-3000:]
    assert f"stopped by SIGTERM after step {run['step']}; resume with:" in err, err[-3000:]
    assert 0 < run["step"] < 12 * 9  # mid-training: 12 epochs of 9 steps (72 training reviews, batch 8)

    resumed = subprocess.run(launch("--resume", str(run_dir)), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (reference_dir,) = reference_runs.iterdir()
    metrics, expected = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference_dir))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert metrics["details"]["distributed"]["weights_identical_across_ranks"] is True
    assert metrics["details"]["optimizer_steps"] == expected["details"]["optimizer_steps"]
    assert metrics["accuracy"] == expected["accuracy"] and metrics["roc_auc"] == expected["roc_auc"]
    assert (run_dir / "predictions.csv").read_bytes() == (reference_dir / "predictions.csv").read_bytes()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_the_trainer_backend_under_torchrun_trains_like_one_process(tmp_path) -> None:
    """transformers.Trainer runs the DDP itself under torchrun, each global batch split over the
    processes: a tiny random BERT (no dropout, so the ranks draw no different masks) in 2 gloo
    processes ends with weights identical across ranks, every test review predicted once, and the
    training of one process up to float rounding of the gradient all-reduce (stated tolerances: 1e-4
    on validation losses, 1e-3 on weights after 36 Adam steps at lr 1e-2, which magnify rounding)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, BertConfig

    from imdb_sentiment.models.hf.encoder import train_wordpiece_tokenizer

    write_tiny_parquet_imdb(tmp_path / "data", size=80)
    tokenizer = train_wordpiece_tokenizer(tiny_reviews(200, 99).texts, vocab_size=120)
    torch.manual_seed(0)
    bert = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=2, hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    AutoModelForSequenceClassification.from_config(bert).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    settings = [f"data.path={json.dumps(str(tmp_path / 'data'))}", "model.name=hf",
                f"model.params.checkpoint={json.dumps(str(tmp_path / 'bert'))}", "model.params.max_length=32",
                "model.params.pooling=mean", "training.backend=trainer", "training.epochs=4", "training.batch_size=8",
                "training.learning_rate=1e-2", "training.early_stopping_patience=null", "training.threads=1",
                "training.precision=fp32"]  # fmt: skip
    config_file = tmp_path / "tiny-bert.yaml"
    config_file.write_text(dump_config(configure({}, settings)))
    launched = subprocess.run(launch(str(config_file), "--output-dir", str(tmp_path / "ddp")),
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = run_experiment(load_config(str(config_file), [f"output_dir={json.dumps(str(tmp_path / 'one'))}"]),
                            show_progress=False)  # fmt: skip

    (run_dir,) = (tmp_path / "ddp").iterdir()
    assert launched.stdout.count("Run folder:") == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["details"]["backend"] == "trainer"
    assert metrics["details"]["distributed"] == {"world_size": 2, "weights_identical_across_ranks": True}
    assert metrics["examples"] == 80
    assert metrics["details"]["optimizer_steps"] == single.metrics["details"]["optimizer_steps"]
    history, expected = (pd.read_csv(folder / "history.csv") for folder in (run_dir, single.run_dir))
    assert expected["valid_loss"].iloc[-1] < 0.6  # it learned something: the comparison means something
    np.testing.assert_allclose(history["valid_loss"], expected["valid_loss"], atol=1e-4)
    weights, expected_weights = (load_file(folder / "model" / "hf_model" / "model.safetensors")
                                 for folder in (run_dir, single.run_dir))  # fmt: skip
    for name, value in expected_weights.items():
        torch.testing.assert_close(weights[name], value, atol=1e-3, rtol=0)
