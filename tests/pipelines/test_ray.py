"""--executor ray on a local Ray instance (2 CPUs, so 2 worker processes): the same numbers as in turn."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import write_tiny_parquet_imdb

pytest.importorskip("ray")
pytest.importorskip("optuna")

from imdb_sentiment.pipelines.benchmark import run_benchmark
from imdb_sentiment.pipelines.executors import RayExecutor
from imdb_sentiment.pipelines.search_space import load_tune_file
from imdb_sentiment.pipelines.suites import Suite, SuiteRow
from imdb_sentiment.pipelines.tune import run_tune


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


@pytest.fixture(scope="module")
def tiny_imdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray-data") / "imdb"
    write_tiny_parquet_imdb(root, size=80)
    return root


def test_a_benchmark_on_ray_gives_the_sequential_numbers(ray_executor, tiny_imdb, tmp_path) -> None:
    assert ray_executor.slots == 2
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm")], out_of_domain=None)
    overrides = [f"data.path={json.dumps(str(tiny_imdb))}", "model.params.min_df=1", "data.limit=40"]
    on_ray, paths = run_benchmark(suite, overrides, tmp_path / "ray", show_progress=False, executor=ray_executor)
    in_turn, _ = run_benchmark(suite, overrides, tmp_path / "local", show_progress=False)
    assert [r.status for r in on_ray.records] == [r.status for r in in_turn.records] == ["completed"] * 2
    assert {path.name for path in paths} >= {"leaderboard.csv", "report.html"}
    numbers = ["accuracy_mean", "f1_mean", "roc_auc_mean", "ece_mean"]
    ray_board = pd.read_csv(tmp_path / "ray" / "leaderboard.csv").set_index("label")[numbers]
    local_board = pd.read_csv(tmp_path / "local" / "leaderboard.csv").set_index("label")[numbers]
    pd.testing.assert_frame_equal(ray_board, local_board)
    for run in ("tfidf-lr", "nbsvm"):
        ray_predictions = pd.read_csv(tmp_path / "ray" / run / "predictions.csv")
        assert ray_predictions.equals(pd.read_csv(tmp_path / "local" / run / "predictions.csv"))
    # Resumable exactly as in turn: the same command again reuses both runs.
    again, _ = run_benchmark(suite, overrides, tmp_path / "ray", show_progress=False, executor=ray_executor)
    assert [record.status for record in again.records] == ["reused", "reused"]


def test_tune_trials_run_as_ray_tasks(ray_executor, tiny_imdb, tmp_path) -> None:
    space = {"fixed": {"model.params.refit_on_train_and_valid": False, "model.params.min_df": 1},
             "params": {"model.params.C": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}}  # fmt: skip
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "tfidf-lr"}, "search": space}))
    overrides = [f"data.path={json.dumps(str(tiny_imdb))}"]
    result = run_tune(load_tune_file(str(path)), tmp_path / "out", overrides, trials=2, executor=ray_executor)
    assert [trial.state.name for trial in result.study.trials] == ["COMPLETE", "COMPLETE"]
    assert result.best is not None and (tmp_path / "out" / "best.yaml").is_file()
    assert len(list((tmp_path / "out" / "trials").glob("*/test_metrics.json"))) == 1
