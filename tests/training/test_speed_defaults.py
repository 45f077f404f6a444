"""Speed defaults of the engine: the optimizer kernel, and OpenMP threads that sleep instead of spin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.configure import configure
from imdb_sentiment.training.optimization import build_optimizer


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(24, 2))


def _train(kernel: str, optimizer: str = "adamw") -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    network = _network()
    optim = build_optimizer(
        network, TrainingConfig(optimizer=optimizer, optimizer_kernel=kernel, learning_rate=0.01)
    )
    inputs = torch.randint(0, 50, (16, 3))
    for _ in range(5):
        nn.functional.cross_entropy(network(inputs), torch.arange(16) % 2).backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
    return optim, [parameter.detach().clone() for parameter in network.parameters()]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_auto_fuses_and_every_kernel_takes_the_same_steps(optimizer: str) -> None:
    fused, expected = _train("auto", optimizer)
    assert fused.defaults["fused"] is True
    for kernel in ("foreach", "for-loop"):
        optim, weights = _train(kernel, optimizer)
        assert not optim.defaults["fused"]
        for got, want in zip(weights, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_an_unknown_kernel_is_one_line_naming_the_field() -> None:
    with pytest.raises(UserError, match=r"training\.optimizer_kernel"):
        configure({"model": {"name": "nbsvm"}, "training": {"optimizer_kernel": "turbo"}})


def _policy_after_import(env: dict[str, str]) -> str:
    code = "import imdb_sentiment, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_openmp_threads_wait_passively_unless_the_user_says_otherwise() -> None:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    assert _policy_after_import(env) == "PASSIVE"
    assert _policy_after_import({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
