"""Training backends registered by name, the optimizer kernel every family honours, the trainer
backend's one device (cuda:N, several GPUs without a launcher), and loop callbacks that can make the
loop save or stop."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import one_line_user_error, tiny_reviews

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.models.base import FitContext
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.training import backends
from imdb_sentiment.training.backends import BACKEND_MODULES, FitJob, get_backend, register_backend
from imdb_sentiment.training.callbacks import Callback, TrainerControl
from imdb_sentiment.training.checkpoint import CheckpointStore
from imdb_sentiment.training.loop import FitResult, FitState, Trainer
from imdb_sentiment.training.optimization import build_optimizer
from imdb_sentiment.training.runtime import Runtime

TINY_CNN = {"embeddings": "random", "embedding_dim": 8, "num_filters": 4, "max_length": 16}


def training(**changes: object) -> TrainingConfig:
    settings = {"epochs": 1, "batch_size": 8, "threads": 1, "device": "cpu", "early_stopping_patience": None}
    return TrainingConfig(**{**settings, **changes})


def tiny_hf_network():
    from transformers import AutoModelForSequenceClassification, BertConfig

    from imdb_sentiment.models.hf.network import HFNetwork

    bert = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                      max_position_embeddings=32, num_labels=2)  # fmt: skip
    return HFNetwork(AutoModelForSequenceClassification.from_config(bert), pooling="mean")


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("for-loop", {"foreach": False, "fused": None}),
        ("foreach", {"foreach": True, "fused": None}),
        ("fused", {"fused": True}),
    ],
)
def test_optimizer_kernel_is_honoured_for_hf_networks(kernel: str, expected: dict[str, object]) -> None:
    """HFNetwork's parameter groups (layer-wise learning rates) used to carry fused=True each, which
    torch applies per group over the optimizer's own setting: for-loop and foreach were ignored."""
    optimizer = build_optimizer(tiny_hf_network(), training(optimizer_kernel=kernel, layerwise_lr_decay=0.9))
    assert len(optimizer.param_groups) > 2  # layer-wise groups
    for group in optimizer.param_groups:
        for key, value in expected.items():
            assert group.get(key) == value, (kernel, key, group.get(key))


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with 2 GPUs, as transformers sees it without a launcher: cuda:0 and n_gpu = 2."""
    from transformers import TrainingArguments

    def setup_devices(self):
        self._n_gpu = torch.cuda.device_count()
        return torch.device("cuda:0")

    simulated = functools.cached_property(setup_devices)
    simulated.__set_name__(TrainingArguments, "_setup_devices")
    monkeypatch.setattr(TrainingArguments, "_setup_devices", simulated)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


@pytest.mark.parametrize(("device", "expected"), [("cuda:1", "cuda:1"), ("cuda", "cuda:0")])
def test_the_trainer_backend_trains_on_the_runtime_device_alone_without_a_launcher(
    two_gpus, tmp_path, device: str, expected: str
) -> None:
    """transformers alone would train on cuda:0 whatever training.device says, and wrap the model in
    DataParallel over both GPUs, doubling the global batch."""
    from imdb_sentiment.training.hf_trainer import training_arguments

    config = training(batch_size=8, eval_batch_size=16, device="cpu")
    runtime = Runtime(device=torch.device(device), bf16=False)
    args = training_arguments(config, runtime, tmp_path, seed=1, logging_enabled=False, show_progress=False)
    assert args.device == torch.device(expected)
    assert args.n_gpu == 1  # no DataParallel
    assert (args.train_batch_size, args.eval_batch_size) == (8, 16)  # the config's global batches
    assert two_gpus[-1] == torch.device(expected)  # accelerate places on the current device


def test_the_trainer_backend_refuses_a_batch_that_does_not_split_over_the_processes() -> None:
    runtime = Runtime(device=torch.device("cpu"), bf16=False, rank=0, world_size=3)
    one_line_user_error(lambda: backends.check_backend_runtime(training(backend="trainer"), runtime),
                        "training.batch_size", "3 processes")  # fmt: skip
    backends.check_backend_runtime(training(backend="native"), runtime)  # the loop repeats an example


def test_unknown_and_unsupported_backends_are_one_line_naming_the_field() -> None:
    message = one_line_user_error(lambda: configure({}, ["training.backend=fsdp"]), "training.backend")
    assert "native" in message and "trainer" in message
    one_line_user_error(
        lambda: configure({"model": {"name": "cnn", "params": TINY_CNN}}, ["training.backend=trainer"]),
        "training.backend", "'native'",
    )  # fmt: skip
    one_line_user_error(lambda: configure({}, ["training.backend=trainer"]), "training.backend", "nbsvm")


def test_a_new_backend_is_one_module_and_one_registration_line(monkeypatch, tmp_path) -> None:
    """What DEVELOPERS.md shows: a function registered by name, and its module in BACKEND_MODULES."""
    jobs: list[FitJob] = []

    def fit_by_delegation(job: FitJob) -> FitResult:
        jobs.append(job)
        return get_backend("native").fit(job)

    monkeypatch.setitem(BACKEND_MODULES, "delegating", __name__)  # the registration line
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))  # forgotten after the test
    register_backend("delegating", network="torch", description="the loop, by way of a test")(fit_by_delegation)

    config = configure({"model": {"name": "cnn", "params": TINY_CNN}},
                          ["training.backend=delegating", "training.epochs=1", "training.threads=1"])  # fmt: skip
    model = get_model_class("cnn")(config.model.params)
    context = FitContext(training=config.training, seed=1, run_dir=tmp_path, show_progress=False)
    model.fit(tiny_reviews(24, 0), tiny_reviews(8, 1), context)
    assert len(jobs) == 1 and jobs[0].network is model.network and jobs[0].run_dir == tmp_path
    assert context.extra_metrics["backend"] == "delegating" and len(context.history) == 1


class SaveAtThreeStopAtFive(Callback):
    def __init__(self) -> None:
        self.saved_at: list[int] = []

    def on_step_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        control.should_save = state.step == 3
        control.should_stop = state.step == 5

    def on_save(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None:
        self.saved_at.append(state.step)


def test_a_callback_makes_the_loop_save_or_stop(tmp_path) -> None:
    from imdb_sentiment.training.native import fit_with_loop

    model = get_model_class("cnn")(TINY_CNN)
    config = training(epochs=3, batch_size=4)  # 6 steps an epoch
    context = FitContext(training=config, seed=1, run_dir=tmp_path, show_progress=False)
    train, valid = model.prepare_fit(tiny_reviews(24, 0), tiny_reviews(8, 1), context)
    callback = SaveAtThreeStopAtFive()
    result = fit_with_loop(FitJob(model.network, model.encoder, train, valid, config, model.runtime,
                                  run_dir=tmp_path, show_progress=False, callbacks=(callback,)))  # fmt: skip
    assert result.steps == 5 and len(result.history) == 1  # stopped inside epoch 1, which still ends
    assert callback.saved_at == [3, 5]  # asked for at step 3; the end of the (cut) epoch writes its own
    previous = CheckpointStore(tmp_path / "checkpoints", torch.device("cpu")).load("previous.pt")
    assert previous["step"] == 3 and previous["position"]["batches"] == 3
