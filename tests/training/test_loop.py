"""The shared training loop: exact resume, early stopping, gradient accumulation, max_steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.training.batching import EncodedDataset, make_loader
from imdb_sentiment.training.callbacks import Callback, TrainerControl
from imdb_sentiment.training.loop import FitState, Trainer
from imdb_sentiment.training.outputs import NetworkOutput

VOCAB = 30
TIME_KEYS = {"elapsed_seconds"}


class PadEncoder(TextEncoder):
    """Only collation is used here: the examples are already token ids."""

    def encode(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        raise NotImplementedError


class BagNetwork(nn.Module):
    """Masked mean of embeddings -> dropout -> linear. Padding-invariant; dropout uses the RNG, so
    an exact resume must restore the random state too."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(8, 2)

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = batch["attention_mask"].unsqueeze(-1).float()
        features = (self.embedding(batch["input_ids"]) * mask).sum(1) / mask.sum(1)
        return NetworkOutput(self.linear(self.dropout(features)), features)


def dataset(size: int, seed: int = 0) -> EncodedDataset:
    """Label 1 iff the review holds token 2 more often than token 3; lengths 2..11."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for index in range(size):
        label = index % 2
        tokens = list(rng.integers(4, VOCAB, size=int(rng.integers(0, 8)))) + [2 if label else 3] * 2
        rng.shuffle(tokens)
        ids.append([int(token) for token in tokens])
        labels.append(label)
    return EncodedDataset(ids, labels)


def config(**changes: object) -> TrainingConfig:
    settings = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-2, "threads": 1, "device": "cpu",
                "early_stopping_patience": None, **changes}  # fmt: skip
    return TrainingConfig(**settings)


def loaders(training: TrainingConfig, size: int = 40) -> tuple[DataLoader, DataLoader]:
    encoder = PadEncoder()
    train = make_loader(dataset(size, 0), encoder, training.batch_size, True, seed=7)
    valid = make_loader(dataset(16, 1), encoder, 8, False)
    return train, valid


def fresh_network(seed: int = 0, dropout: float = 0.2) -> BagNetwork:
    torch.manual_seed(seed)
    return BagNetwork(dropout)


def without_times(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{key: value for key, value in epoch.items() if key not in TIME_KEYS} for epoch in history]


class CrashInEpoch2(Callback):
    def __init__(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch

    def on_step_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        if state.step == self.steps_per_epoch + 2:
            raise KeyboardInterrupt("simulated crash in epoch 2")


class SnapshotEachEpoch(Callback):
    def __init__(self) -> None:
        self.states: dict[int, dict[str, Tensor]] = {}

    def on_epoch_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        self.states[int(logs["epoch"])] = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_resume_after_epoch_1_matches_an_uninterrupted_run(tmp_path) -> None:
    training = config(epochs=2)
    torch.manual_seed(123)
    reference_network = fresh_network()
    reference = Trainer(reference_network, training, run_dir=tmp_path / "ref", show_progress=False)
    expected = reference.fit(*loaders(training))

    torch.manual_seed(123)
    crashing = Trainer(fresh_network(), training, run_dir=tmp_path / "run", show_progress=False,
                       callbacks=[CrashInEpoch2(len(loaders(training)[0]))])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(*loaders(training))
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()

    torch.manual_seed(999)  # the resumed process starts from other random state and other weights
    resumed_network = fresh_network(seed=5)
    resumed = Trainer(resumed_network, training, run_dir=tmp_path / "run", show_progress=False)
    result = resumed.fit(*loaders(training), resume=True)

    assert without_times(result.history) == without_times(expected.history)
    assert (result.best_epoch, result.steps) == (expected.best_epoch, expected.steps)
    for name, value in reference_network.state_dict().items():
        torch.testing.assert_close(resumed_network.state_dict()[name], value, rtol=0, atol=0)


def test_resume_with_a_damaged_last_checkpoint_uses_the_previous_one(tmp_path) -> None:
    training = config(epochs=3)
    torch.manual_seed(123)
    reference_network = fresh_network()
    expected = Trainer(reference_network, training, run_dir=tmp_path / "ref", show_progress=False).fit(
        *loaders(training)
    )
    torch.manual_seed(123)
    crashing = Trainer(fresh_network(), training, run_dir=tmp_path / "run", show_progress=False,
                       callbacks=[CrashInEpoch2(2 * len(loaders(training)[0]))])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):  # in epoch 3: last.pt is epoch 2, previous.pt epoch 1
        crashing.fit(*loaders(training))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # the newest checkpoint was cut short

    resumed_network = fresh_network(seed=5)
    result = Trainer(resumed_network, training, run_dir=tmp_path / "run", show_progress=False).fit(
        *loaders(training), resume=True
    )
    assert without_times(result.history) == without_times(expected.history)
    for name, value in reference_network.state_dict().items():
        torch.testing.assert_close(resumed_network.state_dict()[name], value, rtol=0, atol=0)


def test_resume_of_a_finished_run_trains_nothing_more(tmp_path) -> None:
    training = config(epochs=1)
    Trainer(fresh_network(), training, run_dir=tmp_path, show_progress=False).fit(*loaders(training))
    again = Trainer(fresh_network(seed=3), training, run_dir=tmp_path, show_progress=False)
    result = again.fit(*loaders(training), resume=True)
    assert len(result.history) == 1 and result.steps == len(loaders(training)[0])


def test_early_stopping_restores_the_best_epoch() -> None:
    # A learning rate this small cannot change validation accuracy: no epoch improves on the first.
    training = config(epochs=10, early_stopping_patience=2, learning_rate=1e-7)
    network = fresh_network()
    snapshots = SnapshotEachEpoch()
    result = Trainer(network, training, callbacks=[snapshots], show_progress=False).fit(*loaders(training))
    assert result.stopped_early
    assert len(result.history) == 3 and result.best_epoch == 1
    assert not torch.equal(snapshots.states[1]["linear.weight"], snapshots.states[3]["linear.weight"])
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, snapshots.states[1][name], rtol=0, atol=0)


def test_gradient_accumulation_equals_a_larger_batch() -> None:
    """2 x 4 examples accumulated == one batch of 8, including a short last group (20 examples)."""
    encoder, data = PadEncoder(), dataset(20)
    results = {}
    for batch_size, accumulation in ((4, 2), (8, 1)):
        training = config(batch_size=batch_size, grad_accum_steps=accumulation, epochs=2)
        network = fresh_network(dropout=0.0)  # no randomness, so the two runs are comparable
        loader = make_loader(data, encoder, batch_size, shuffle=False, bucketing=False)
        result = Trainer(network, training, show_progress=False).fit(loader, None)
        results[batch_size] = (result.steps, network.state_dict())
    assert results[4][0] == results[8][0] == 6  # ceil(5 batches / 2) and ceil(20 / 8) per epoch
    for name, value in results[8][1].items():
        torch.testing.assert_close(results[4][1][name], value, atol=1e-6, rtol=1e-5)


def test_max_steps_stops_mid_epoch() -> None:
    training = config(epochs=5, max_steps=3)
    result = Trainer(fresh_network(), training, show_progress=False).fit(*loaders(training))
    assert result.steps == 3 and len(result.history) == 1


def test_training_learns_the_toy_task() -> None:
    training = config(epochs=6, learning_rate=5e-2)
    result = Trainer(fresh_network(), training, show_progress=False).fit(*loaders(training, size=64))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_valid_accuracy >= 0.9


class CrashAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt(f"simulated crash at step {state.step}")


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_mid_epoch_from_a_step_checkpoint_matches_an_uninterrupted_run(tmp_path, accumulation) -> None:
    training = config(epochs=2, checkpoint_every_steps=3, grad_accum_steps=accumulation)
    steps_per_epoch = -(-len(loaders(training)[0]) // accumulation)
    torch.manual_seed(123)
    reference_network = fresh_network()
    expected = Trainer(reference_network, training, show_progress=False).fit(*loaders(training))

    torch.manual_seed(123)
    crash_step = steps_per_epoch + 4  # in epoch 2, before that step's own checkpoint
    crashing = Trainer(fresh_network(), training, run_dir=tmp_path, show_progress=False,
                       callbacks=[CrashAtStep(crash_step)])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(*loaders(training))
    state = crashing.checkpoints.load_resume_point()
    saved_step = (crash_step - 1) // 3 * 3
    assert (state["epoch"], state["step"]) == (1, saved_step)
    assert state["position"]["batches"] == (saved_step - steps_per_epoch) * accumulation  # inside epoch 2
    # the one before it is kept: a step checkpoint or the end of epoch 1, whichever came later
    assert crashing.checkpoints.load("previous.pt")["step"] == max(saved_step - 3, steps_per_epoch)

    torch.manual_seed(999)
    resumed_network = fresh_network(seed=5)
    result = Trainer(resumed_network, training, run_dir=tmp_path, show_progress=False).fit(
        *loaders(training), resume=True
    )
    assert without_times(result.history) == without_times(expected.history)  # bit-exact, train totals too
    assert result.steps == expected.steps
    for name, value in reference_network.state_dict().items():
        torch.testing.assert_close(resumed_network.state_dict()[name], value, rtol=0, atol=0)
