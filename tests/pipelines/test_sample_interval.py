"""Rows scored on a stratified test sample carry the 95% interval of their accuracy: in metrics.json, the
leaderboard and the report's accuracy figure; rows on the full test set carry none."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli, write_tiny_parquet_imdb

from imdb_sentiment.evaluation.metrics import accuracy_interval
from imdb_sentiment.models.configure import configure
from imdb_sentiment.pipelines.experiment import run_experiment


def test_the_wilson_interval() -> None:
    low, high = accuracy_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert accuracy_interval(1.0, 50)[1] == 1.0 and accuracy_interval(1.0, 50)[0] < 1.0  # inside [0, 1]
    low, high = accuracy_interval(0.8255, 2000)  # the README's 2,000-review sample: about +-1.7 points
    assert high - low == pytest.approx(0.033, abs=0.002)


def test_a_sampled_test_set_records_the_interval_and_the_full_one_does_not(tmp_path) -> None:
    write_tiny_parquet_imdb(tmp_path / "imdb", size=60)
    common = ["model.name=tfidf-lr", "model.params.min_df=1", f"data.path={json.dumps(str(tmp_path / 'imdb'))}",
              f"output_dir={json.dumps(str(tmp_path / 'runs'))}"]  # fmt: skip
    sampled = run_experiment(configure({}, [*common, "data.test_limit=20"]), show_progress=False).metrics
    full = run_experiment(configure({}, common), show_progress=False).metrics
    assert sampled["examples"] == 20 and not sampled["full_test_set"]
    assert sampled["accuracy_ci95_low"] <= sampled["accuracy"] <= sampled["accuracy_ci95_high"]
    assert (sampled["accuracy_ci95_low"], sampled["accuracy_ci95_high"]) == accuracy_interval(
        sampled["accuracy"], 20
    )
    assert "accuracy_ci95_low" not in full


def test_the_leaderboard_shows_a_samples_interval(tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "imdb", size=60)
    code, _, err = run_cli(["benchmark", "--models", "tfidf-lr", "--data", str(tmp_path / "imdb"), "--test-limit", "20",
                            "--output-dir", str(tmp_path / "bench"), "--set", "model.params.min_df=1", "--quiet"],
                           capsys)  # fmt: skip
    assert code == 0, err
    board = (tmp_path / "bench" / "leaderboard.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| rank |"))
    row = next(line for line in board.splitlines() if line.startswith("| 1 |"))
    column = [cell.strip() for cell in header.split("|")].index("95% interval (test sample)")
    low, high = (float(value) for value in row.split("|")[column].strip().split("–"))
    assert low <= high and "a stratified test SAMPLE" in board
