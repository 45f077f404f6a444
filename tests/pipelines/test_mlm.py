"""Masked-LM pre-training: a couple of steps on a tiny BERT, and bert-scratch starts from the result."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.pipelines.mlm import MLMSettings, pretrain_mlm, pretraining_texts

WORDS = ["the", "movie", "plot", "actor", "scene", "was", "great", "awful", "boring", "loved", "film", "a"]
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}


def texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 30)))) for _ in range(count)]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    output = tmp_path_factory.mktemp("mlm") / "bert-mlm"
    settings = MLMSettings(model="bert-scratch", output=output, max_length=32, max_steps=2, batch_size=8,
                           vocab="train", vocab_size=150, show_progress=False, **TINY)  # fmt: skip
    torch.set_num_threads(1)
    return output, pretrain_mlm(texts(60), settings)


def test_mlm_steps_write_a_model_folder(pretrained) -> None:
    output, summary = pretrained
    assert summary["steps"] == 2 and math.isfinite(summary["train_loss"])
    assert summary["train_blocks"] > 0 and summary["eval_blocks"] >= 1
    for name in ("config.json", "model.safetensors", "tokenizer.json", "mlm.json"):
        assert (output / name).is_file(), name
    assert json.loads((output / "mlm.json").read_text())["architecture"] == "BertForMaskedLM"


def test_bert_scratch_starts_from_the_mlm_weights(pretrained, tmp_path) -> None:
    from transformers import AutoModelForMaskedLM

    output, _ = pretrained
    model = get_model_class("bert-scratch")({"init_from": str(output), "max_length": 32, **TINY})
    training = TrainingConfig(epochs=1, max_steps=2, batch_size=8, learning_rate=1e-3, threads=1)
    context = FitContext(training=training, show_progress=False)
    model.encoder = model.build_encoder(TextDataset(texts(4), np.zeros(4)), context)
    network = model.build_network(NetworkRequest())
    mlm = AutoModelForMaskedLM.from_pretrained(output)
    torch.testing.assert_close(
        network.backbone.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight
    )
    assert len(model.encoder.tokenizer) == mlm.config.vocab_size  # the MLM's own trained vocabulary

    labels = np.arange(16) % 2
    model.fit(TextDataset(texts(16, 1), labels), TextDataset(texts(4, 2), np.array([0, 1, 0, 1])), context)
    assert model.predict_proba(texts(3, 3)).shape == (3, 2)


def test_minilm_continued_pretraining_one_step(tmp_path) -> None:
    settings = MLMSettings(model="minilm", output=tmp_path / "minilm-mlm", max_length=16, max_steps=1,
                           batch_size=4, show_progress=False)  # fmt: skip
    summary = pretrain_mlm(texts(8), settings)
    assert summary["steps"] == 1 and summary["architecture"] == "BertForMaskedLM"
    assert (tmp_path / "minilm-mlm" / "vocab.txt").is_file() or (
        tmp_path / "minilm-mlm" / "tokenizer.json"
    ).is_file()


def test_output_folder_must_be_new(pretrained) -> None:
    output, _ = pretrained
    with pytest.raises(UserError, match="not empty"):
        pretrain_mlm(texts(4), MLMSettings(output=output, show_progress=False))


def test_pretraining_texts_are_unsup_and_train_never_test(tmp_path) -> None:
    import pandas as pd
    from helpers import write_tiny_parquet_imdb

    write_tiny_parquet_imdb(tmp_path / "imdb", size=20)
    chosen, source = pretraining_texts(str(tmp_path / "imdb"))
    frames = {split: pd.read_parquet(tmp_path / "imdb" / f"{split}.parquet") for split in ("train", "unsup")}
    assert len(chosen) == sum(len(frame) for frame in frames.values()) == source["texts_used"]
    only_unsup, _ = pretraining_texts(str(tmp_path / "imdb"), include_train=False, limit=5)
    assert len(only_unsup) == 5


def test_cli_pretrain_mlm(tmp_path, capsys) -> None:
    from helpers import run_cli, write_tiny_parquet_imdb

    write_tiny_parquet_imdb(tmp_path / "imdb", size=20)
    args = ["pretrain-mlm", "--data", str(tmp_path / "imdb"), "--output", str(tmp_path / "out"), "--max-steps", "1",
            "--max-length", "32", "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2",
            "--intermediate-size", "64", "--quiet"]  # fmt: skip
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "config.json").is_file() and "init_from" in out
    code, _, err = run_cli(args, capsys)  # the folder now exists: one-line error, exit 2
    assert code == 2 and "not empty" in err
