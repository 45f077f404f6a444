"""tune: validation-only trials, best.yaml, one test evaluation, resume, pruning, search-space errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import one_line_user_error, run_cli, tiny_three_class_reviews, write_tiny_parquet_imdb

pytest.importorskip("optuna")

from imdb_sentiment.data.splits import load_data
from imdb_sentiment.pipelines import experiment as experiment_module
from imdb_sentiment.pipelines.search_space import check_space, load_tune_file
from imdb_sentiment.pipelines.tune import open_study, run_tune

LINEAR_SPACE = {
    "startup_trials": 2,
    "fixed": {"model.params.refit_on_train_and_valid": False, "model.params.min_df": 1},
    "params": {
        "model.params.C": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
        "model.params.ngram_max": {"type": "int", "low": 1, "high": 2},
    },
}


@pytest.fixture(scope="module")
def tiny_imdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune-data") / "imdb"
    write_tiny_parquet_imdb(root, size=80)
    return root


def tune_file(folder: Path, space: dict, experiment: dict | None = None) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({**(experiment or {"model": {"name": "tfidf-lr"}}), "search": space}))
    return path


def test_trials_score_validation_only_and_the_best_is_tested_once(
    tiny_imdb, tmp_path, capsys, monkeypatch
) -> None:
    data = load_data(load_tune_file(str(tune_file(tmp_path, LINEAR_SPACE))).trial_config(
        {}, [f"data.path={json.dumps(str(tiny_imdb))}"]).data)  # fmt: skip
    scored: list[list[str]] = []
    real_evaluate = experiment_module.evaluate_model

    def spy(model, texts, labels, batch_size):
        scored.append(list(texts))
        return real_evaluate(model, texts, labels, batch_size)

    monkeypatch.setattr(experiment_module, "evaluate_model", spy)
    out = tmp_path / "out"
    args = ["tune", str(tmp_path / "space.yaml"), "--trials", "3", "--output-dir", str(out), "--data", str(tiny_imdb),
            "--quiet"]  # fmt: skip
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    assert "test accuracy (best trial only)" in stdout
    # Trial 0 is the config as written (tfidf-lr's C 8, bigrams): every search is measured against it.
    first = pd.read_csv(out / "trials.csv").iloc[0]
    assert (first["params_model.params.C"], first["params_model.params.ngram_max"]) == (8.0, 2)
    assert "The hand-set config (the values as written, trial 0)" in stdout
    # Every trial was scored on the validation split, never on the test split.
    assert len(scored) == 3 and all(texts == data.valid.texts for texts in scored)
    trials = sorted((out / "trials").iterdir())
    assert len(trials) == 3
    for trial in trials:
        metrics = json.loads((trial / "metrics.json").read_text())
        assert metrics["split"] == "validation" and metrics["examples"] == len(data.valid)
        assert len(pd.read_csv(trial / "predictions.csv")) == len(data.valid)
    # The test split: scored once, for the best trial, whose config best.yaml is.
    tested = [trial for trial in trials if (trial / "test_metrics.json").is_file()]
    assert len(tested) == 1
    test_metrics = json.loads((tested[0] / "test_metrics.json").read_text())
    assert test_metrics["split"] == "test" and test_metrics["examples"] == len(data.test)
    assert (out / "best.yaml").read_text() == (tested[0] / "config.yaml").read_text()
    html = (out / "tune-report.html").read_text()
    assert "Best trial" in html and "data:image/png;base64," in html and "http" not in html
    assert "The hand-set config (the values as written, trial 0)" in html
    assert len(pd.read_csv(out / "trials.csv")) == 3

    # best.yaml is a config `train` runs as is.
    code, _, stderr = run_cli(["train", str(out / "best.yaml"), "--output-dir", str(tmp_path / "runs"), "--quiet"],
                              capsys)  # fmt: skip
    assert code == 0, stderr
    best_run = next((tmp_path / "runs").iterdir())
    assert json.loads((best_run / "metrics.json").read_text())["accuracy"] == test_metrics["accuracy"]

    # The same command again: the study is complete, nothing runs and the test is not scored again.
    stamp = (tested[0] / "test_metrics.json").stat().st_mtime_ns
    scored.clear()
    assert run_cli(args, capsys)[0] == 0
    assert scored == [] and (tested[0] / "test_metrics.json").stat().st_mtime_ns == stamp
    # A larger budget adds trials to the same study.
    assert run_cli([*args[:3], "5", *args[4:]], capsys)[0] == 0
    assert len(scored) == 2 and len(list((out / "trials").iterdir())) == 5
    assert len(pd.read_csv(out / "trials.csv")) == 5


def test_a_lagging_word_model_trial_is_pruned_after_an_epoch(tiny_imdb, tmp_path) -> None:
    word = {"embeddings": "random", "embedding_dim": 16, "max_length": 24, "min_freq": 1}
    experiment = {"model": {"name": "fasttext", "params": word},
                  "training": {"epochs": 3, "batch_size": 8, "early_stopping_patience": None, "threads": 1}}  # fmt: skip
    space = {"startup_trials": 1, "pruner": "median",
             "params": {"training.learning_rate": {"type": "categorical", "choices": [0.03, 1.0e-7]}}}  # fmt: skip
    tune = load_tune_file(str(tune_file(tmp_path, space, experiment)))
    overrides = [f"data.path={json.dumps(str(tiny_imdb))}", "data.valid_fraction=0.3"]
    out = tmp_path / "out"
    out.mkdir()
    study = open_study(tune, overrides, f"sqlite:///{out / 'study.db'}", "tune")
    study.enqueue_trial({"training.learning_rate": 0.03})  # learns the cue words in an epoch
    study.enqueue_trial({"training.learning_rate": 1.0e-7})  # cannot move from its initialisation
    result = run_tune(tune, out, overrides, trials=2)
    states = [trial.state.name for trial in result.study.trials]
    assert states == ["COMPLETE", "PRUNED"]
    pruned = result.study.trials[1]
    assert list(pruned.intermediate_values) == [1]  # stopped after its first epoch's validation
    assert json.loads((out / "trials" / "trial-0001" / "run.json").read_text())["status"] == "pruned"
    assert result.best is not None and result.best["number"] == 0


@pytest.mark.parametrize(
    ("space", "fragments"),
    [
        ({"params": {"model.params.C": {"type": "float", "low": 5, "high": 1}}}, ["search.params", "below high"]),
        ({"params": {"model.params.C": {"type": "uniform", "low": 0, "high": 1}}}, ["search.params", "type"]),
        ({"params": {"training.lerning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}},
         ["search.params.training.lerning_rate", "unknown field"]),
        ({"params": {"training.learning_rate": {"type": "float", "low": 1e-4, "high": 0.8, "log": True}}},
         ["search.params.training.learning_rate: 0.8", "sane range"]),
        ({"params": {"training.momentum": {"type": "float", "low": 0.5, "high": 0.9,
                                           "when": {"training.optimizer": "sgd"}},
                     "training.optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]}}},
         ["training.momentum.when", "declared after"]),
        ({"metric": "test_accuracy", "params": {"model.params.C": {"type": "float", "low": 1, "high": 2}}},
         ["search.metric"]),
    ],
)  # fmt: skip
def test_search_space_problems_are_one_line_before_any_folder(tmp_path, space, fragments) -> None:
    space = {"fixed": {"model.params.refit_on_train_and_valid": False}, **space}

    def check() -> None:
        check_space(load_tune_file(str(tune_file(tmp_path, space))), [])

    one_line_user_error(check, *fragments)


def test_tuning_a_model_that_refits_on_validation_is_refused_through_the_cli(tmp_path, capsys) -> None:
    path = tmp_path / "refits.yaml"
    path.write_text(yaml.safe_dump({"search": {"base": "tfidf-lr", "params": LINEAR_SPACE["params"]}}))
    code, _, stderr = run_cli(["tune", str(path), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "model.params.refit_on_train_and_valid" in stderr and "search.fixed" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_shipped_search_spaces_are_valid() -> None:
    for model in ("nbsvm", "tfidf-lr", "fasttext", "cnn", "gru", "minilm"):
        check_space(load_tune_file(model), [])


@pytest.mark.parametrize("command", [["tune", "tfidf-lr"], ["benchmark", "--models", "tfidf-lr"]])
def test_executor_ray_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch, command) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, stderr = run_cli([*command, "--executor", "ray", "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and 'pip install "imdb-sentiment[ray]"' in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_ctrl_c_ends_cleanly_and_the_same_command_continues_the_study(
    tiny_imdb, tmp_path, capsys, monkeypatch
) -> None:
    tune_file(tmp_path, LINEAR_SPACE)
    out = tmp_path / "out"
    args = ["tune", str(tmp_path / "space.yaml"), "--trials", "3", "--output-dir", str(out), "--data", str(tiny_imdb),
            "--quiet"]  # fmt: skip
    real_evaluate, calls = experiment_module.evaluate_model, []

    def ctrl_c_in_the_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(experiment_module, "evaluate_model", ctrl_c_in_the_second_trial)
    code, _, stderr = run_cli(args, capsys)
    assert code == 130 and "the same tune command" in stderr
    assert json.loads((out / "trials" / "trial-0001" / "run.json").read_text())["status"] == "interrupted"
    assert (out / "tune-report.html").is_file()  # what finished is reported

    monkeypatch.setattr(experiment_module, "evaluate_model", real_evaluate)
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    study = open_study(load_tune_file(str(tmp_path / "space.yaml")), [f"data.path={json.dumps(str(tiny_imdb))}"],
                       f"sqlite:///{out / 'study.db'}", "tune")  # fmt: skip
    trials = study.trials
    assert [trial.state.name for trial in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].params == trials[1].params  # the interrupted trial was asked again, in its own folder
    assert json.loads((out / "trials" / "trial-0001" / "run.json").read_text())["status"] == "completed"
    assert len(list((out / "trials").glob("trial-0001.abandoned-*"))) == 1  # nothing to resume: set aside


def test_a_bad_storage_url_is_one_line_before_any_folder(tmp_path, capsys) -> None:
    path = tune_file(tmp_path, LINEAR_SPACE)
    code, _, stderr = run_cli(["tune", str(path), "--storage", "nosuchdb://host/x", "--output-dir",
                               str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and "--storage nosuchdb://host/x" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_sigint_to_the_tune_process_stops_it_cleanly(tiny_imdb, tmp_path) -> None:
    import signal
    import subprocess
    import time

    word = {"embeddings": "random", "embedding_dim": 16, "max_length": 24, "min_freq": 1}
    experiment = {"model": {"name": "fasttext", "params": word},
                  "training": {"epochs": 1000, "batch_size": 8, "early_stopping_patience": None, "threads": 1}}  # fmt: skip
    space = {"params": {"training.learning_rate": {"type": "categorical", "choices": [0.01]}}}
    path = tune_file(tmp_path, space, experiment)
    out = tmp_path / "out"
    cli = Path(sys.executable).with_name("imdb-sentiment")
    command = [str(cli), "tune", str(path), "--trials", "2", "--output-dir", str(out), "--data", str(tiny_imdb),
               "--quiet"]  # fmt: skip
    # Started with SIGINT's default disposition, as a terminal does (see test_experiment.py).
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("trials/*/checkpoints/last.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("the same tune command (the study "
                                                                            "continues where it stopped)")  # fmt: skip
    assert json.loads((out / "trials" / "trial-0000" / "run.json").read_text())["status"] == "interrupted"
    study = open_study(load_tune_file(str(path)), [f"data.path={json.dumps(str(tiny_imdb))}"],
                       f"sqlite:///{out / 'study.db'}", "tune")  # fmt: skip
    # The stopped trial is failed-and-interrupted in the study, and already asked again (enqueued).
    assert [trial.state.name for trial in study.trials] == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs["interrupted"] and (out / "tune-report.html").is_file()


def test_a_three_class_search_on_macro_f1_and_the_metrics_the_task_lacks(tmp_path, capsys) -> None:
    reviews = tiny_three_class_reviews(90, 0)
    table = tmp_path / "three.csv"
    pd.DataFrame({"text": reviews.texts, "label": [reviews.classes.names[i] for i in reviews.labels]}).to_csv(
        table
    )
    test = tiny_three_class_reviews(30, 1)
    test_table = tmp_path / "three-test.csv"
    pd.DataFrame({"text": test.texts, "label": [test.classes.names[i] for i in test.labels]}).to_csv(test_table)
    space = tune_file(tmp_path, {**LINEAR_SPACE, "metric": "macro_f1"})
    data = ["--data", str(table), "--set", f"data.test_path={json.dumps(str(test_table))}", "--quiet"]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["tune", str(space), "--trials", "2", "--output-dir", str(out), *data], capsys)
    assert code == 0, stderr
    assert "validation macro_f1" in stdout
    result = yaml.safe_load((out / "best.yaml").read_text())  # a config train runs as is
    tested = next(out.glob("trials/*/test_metrics.json"))
    assert {"macro_f1", "per_class"} <= set(json.loads(tested.read_text())) and result["data"]["path"] == str(
        table
    )
    assert "test macro_f1" in (out / "tune-report.html").read_text()
    # f1 (of class 1) means nothing with three classes: one line naming search.metric, before any folder.
    binary_only = tune_file(tmp_path, {**LINEAR_SPACE, "metric": "f1"})
    code, _, stderr = run_cli(["tune", str(binary_only), "--output-dir", str(tmp_path / "f1"), *data], capsys)
    assert code == 2 and "search.metric: f1" in stderr and "macro_f1" in stderr and not (tmp_path / "f1").exists()
    # Known from the config alone: the star ratings have no F1 of a class 1; unordered classes no within_one.
    for metric, overrides, fragment in (("f1", ["data.target=rating"], "8 classes"),
                                        ("within_one", ["data.labels=[a,b,c]"], "ordered classes")):  # fmt: skip
        tune = load_tune_file(str(tune_file(tmp_path, {**LINEAR_SPACE, "metric": metric})))
        one_line_user_error(
            lambda tune=tune, overrides=overrides: check_space(tune, overrides), "search.metric", fragment
        )


def test_hand_set_values_outside_the_space_or_their_conditions_are_left_to_the_sampler() -> None:
    from imdb_sentiment.pipelines.search_space import SearchSpace, hand_set_values

    space = SearchSpace.model_validate({"params": {
        "model.params.C": {"type": "float", "low": 0.01, "high": 1.0, "log": True},  # the config's 8 is outside
        "model.params.ngram_max": {"type": "int", "low": 1, "high": 3},
        "training.scheduler": {"type": "categorical", "choices": ["linear", "cosine"]},
        "training.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05,
                                  "when": {"training.scheduler": ["linear"]}},
    }})  # fmt: skip
    resolved = {"model": {"params": {"C": 8.0, "ngram_max": 2}},
                "training": {"scheduler": "cosine", "warmup_ratio": 0.1}}  # fmt: skip
    assert hand_set_values(space, resolved) == {"model.params.ngram_max": 2, "training.scheduler": "cosine"}
    resolved["training"]["scheduler"] = "linear"
    assert hand_set_values(space, resolved)["training.warmup_ratio"] == 0.1
    resolved["training"]["warmup_ratio"] = 0.15  # on the 0.05 grid, though 0.15 / 0.05 = 2.9999999999999996
    assert hand_set_values(space, resolved)["training.warmup_ratio"] == 0.15
    resolved["training"]["warmup_ratio"] = 0.12  # off the grid: sampled
    assert "training.warmup_ratio" not in hand_set_values(space, resolved)
