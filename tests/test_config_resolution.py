"""The resolved config is derived once, never patched; machine checks happen before any run folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import torch

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.configure import configure


def test_model_params_are_completed_without_touching_the_input() -> None:
    raw = {"model": {"name": "cnn", "params": {"embeddings": "random"}}}
    config = configure(raw)
    assert raw == {"model": {"name": "cnn", "params": {"embeddings": "random"}}}
    assert config.model.params["embedding_dim"] == 200 and config.model.params["embeddings"] == "random"


def test_a_validated_config_cannot_be_changed() -> None:
    config = configure({})
    with pytest.raises(pydantic.ValidationError):
        config.training.backend = "trainer"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        config.seed = 3  # type: ignore[misc]


def test_unknown_objective_names_the_field() -> None:
    with pytest.raises(UserError, match=r"training\.objective\.name: unknown objective 'focal'"):
        configure({"training": {"objective": {"name": "focal"}}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_unavailable_device_is_refused_before_a_run_folder_exists(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"training\.device: cuda was asked for but no CUDA GPU"):
        configure({"model": {"name": "fasttext"}, "training": {"device": "cuda"}})
    with pytest.raises(UserError, match=r"training\.device: unknown device 'tpu9'"):
        configure({"model": {"name": "fasttext"}, "training": {"device": "tpu9"}})
    # a finished run trained on a GPU still loads here, to predict on the CPU
    configure({"model": {"name": "fasttext"}, "training": {"device": "cuda"}}, for_training=False)
    cli = Path(sys.executable).with_name("imdb-sentiment")
    result = subprocess.run(
        [str(cli), "train", "fasttext", "--set", "training.device=cuda", "--output-dir", str(tmp_path / "runs"),
         "--data", str(tmp_path / "no-data-needed")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "training.device" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_seeds_stay_within_what_numpy_and_scikit_learn_take() -> None:
    with pytest.raises(UserError, match=r"seed: Input should be less than or equal to 4294967295"):
        configure({"seed": 2**32})
    with pytest.raises(UserError, match=r"data\.seed"):
        configure({"data": {"seed": 2**32}})
    assert configure({"seed": 2**32 - 1}).data.seed == 2**32 - 1
