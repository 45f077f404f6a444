"""``imdb-sentiment export RUN --merge``: a LoRA run becomes a plain run that predicts the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from helpers import run_cli, write_tiny_parquet_imdb


def tiny_checkpoint(folder: Path) -> Path:
    from transformers import AutoModel, BertConfig

    from imdb_sentiment.models.hf.encoder import load_tokenizer
    from imdb_sentiment.models.hf.hub import minilm_path

    tokenizer = load_tokenizer(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_merge_gives_a_plain_run_with_the_same_predictions(tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "imdb", size=40)
    checkpoint = tiny_checkpoint(tmp_path / "tiny-bert")
    code, _, err = run_cli(
        ["train", "hf", "--data", str(tmp_path / "imdb"), "--output-dir", str(tmp_path / "runs"), "--quiet",
         "--set", f"model.params.checkpoint={checkpoint}", "--set", "model.params.max_length=32",
         "--set", "model.params.pooling=mean", "--set", "model.params.adapter={method: lora, rank: 4}",
         "--set", "training.epochs=1", "--set", "training.learning_rate=1e-3", "--set", "training.threads=1"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    code, _, err = run_cli(["export", str(run), "--merge"], capsys)  # the refusal below is the real process's
    assert code == 0, err
    merged = run.with_name(run.name + "-merged")
    assert (merged / "model" / "hf_model").is_dir() and not (merged / "model" / "adapter").exists()

    texts = ["a great and wonderful film", "awful boring mess", "the plot was a story"]
    predictions = {}
    for folder in (run, merged):
        code, _, err = run_cli(["predict", str(folder), *texts, "--output", str(folder / "p.csv")], capsys)
        assert code == 0, err
        predictions[folder] = pd.read_csv(folder / "p.csv")["prob_positive"].to_numpy()
    assert abs(predictions[run] - predictions[merged]).max() < 1e-5

    cli = Path(sys.executable).with_name("imdb-sentiment")
    again = subprocess.run([str(cli), "export", str(run), "--merge"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr and "Traceback" not in again.stderr
    code, _, err = run_cli(["export", str(merged), "--merge"], capsys)
    assert code == 2 and "no adapter to merge" in err


def test_the_graph_form_of_a_mean_embedding_bag_gives_its_numbers() -> None:
    """The exporter replaces nn.EmbeddingBag (exported by torch as a per-review Loop) with
    MeanOfEmbeddings: the same vectors, padding left out of the mean, an all-padding row zeros."""
    from torch import nn

    from imdb_sentiment.models.pooling import MeanOfEmbeddings
    from imdb_sentiment.pipelines.export import graph_friendly

    torch.manual_seed(0)
    bag = nn.EmbeddingBag(50, 8, mode="mean", padding_idx=0)
    with torch.no_grad():
        bag.weight[0] = 5.0  # a padding row that is not zero must still count for nothing
    ids = torch.tensor([[3, 4, 0, 0], [7, 7, 7, 9], [0, 0, 0, 0]])
    torch.testing.assert_close(MeanOfEmbeddings(bag)(ids), bag(ids))
    network = nn.Sequential(bag)
    friendly = graph_friendly(network)
    assert isinstance(friendly[0], MeanOfEmbeddings) and isinstance(network[0], nn.EmbeddingBag)
