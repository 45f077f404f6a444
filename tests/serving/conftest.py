"""Tiny trained runs shared by the serving tests (each trained once per session, in seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import tiny_three_class_reviews, write_tiny_parquet_imdb

from imdb_sentiment.models.configure import configure
from imdb_sentiment.pipelines.experiment import run_experiment

WORD = ["model.params.embeddings=random", "model.params.embedding_dim=16", "model.params.max_length=40",
        "model.params.min_freq=1", "training.threads=1", "training.epochs=2", "training.batch_size=8",
        "training.early_stopping_patience=null"]  # fmt: skip
RUNS: dict[str, list[str]] = {
    "nbsvm": ["model.params.min_df=1", "model.params.max_features=null"],
    "tfidf-lr": ["model.params.min_df=1"],
    "attention-lstm": [*WORD, "model.params.hidden_size=8", "model.params.attention_size=8"],
    "cnn": [*WORD, "model.params.num_filters=4"],
    "fasttext": [*WORD, "model.params.buckets=64"],
    "hf": ["model.params.from_scratch=true", "model.params.hidden_size=32", "model.params.num_layers=1",
           "model.params.num_heads=2", "model.params.intermediate_size=64", "model.params.max_length=32",
           "training.threads=1", "training.epochs=1", "training.batch_size=8", "training.max_steps=4",
           "training.early_stopping_patience=null"],
}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_imdb(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serving-data") / "imdb"
    write_tiny_parquet_imdb(folder, size=60)
    return folder


@pytest.fixture(scope="session")
def trained_run(tiny_imdb, tmp_path_factory):
    """name -> the run folder of a tiny run of that model, trained on first use."""
    runs: dict[str, Path] = {}
    output = tmp_path_factory.mktemp("serving-runs")

    def run(name: str) -> Path:
        if name not in runs:
            overrides = [f"model.name={name}", f"data.path={json.dumps(str(tiny_imdb))}",
                         f"output_dir={json.dumps(str(output))}", *RUNS[name]]  # fmt: skip
            runs[name] = run_experiment(configure({}, overrides), show_progress=False).run_dir
        return runs[name]

    return run


@pytest.fixture(scope="session")
def three_class_run(tmp_path_factory) -> Path:
    """A tfidf-lr run on a CSV of negative / neutral / positive reviews, through the real pipeline."""
    root = tmp_path_factory.mktemp("three-class")
    reviews = tiny_three_class_reviews(90, 0)
    names = [reviews.classes.name_of(label) for label in reviews.labels]
    pd.DataFrame({"text": reviews.texts, "label": names}).to_csv(root / "reviews.csv", index=False)
    overrides = ["model.name=tfidf-lr", f"data.path={json.dumps(str(root / 'reviews.csv'))}",
                 f"output_dir={json.dumps(str(root / 'runs'))}", *RUNS["tfidf-lr"]]  # fmt: skip
    return run_experiment(configure({}, overrides), show_progress=False).run_dir
