"""End-to-end CLI: train -> run folder -> evaluate -> predict, benchmark, and clean failures."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from helpers import NullCapture, run_cli, write_tiny_parquet_imdb

FAST = ["--set", "model.params.min_df=1", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_tiny_parquet_imdb(root / "imdb")
    capsys = NullCapture()
    code, _out, err = run_cli(
        ["train", "tfidf-lr", "--data", str(root / "imdb"), "--output-dir", str(root / "runs"), *FAST], capsys
    )
    assert code == 0, err
    (run_dir,) = list((root / "runs").iterdir())
    return root, run_dir


def test_train_writes_a_complete_run_folder(trained_run) -> None:
    _, run_dir = trained_run
    for name in ("config.yaml", "metrics.json", "predictions.csv", "environment.json", "data.json", "run.json",
                 "train.log", "model/model.json", "plots/confusion_matrix.png", "plots/roc_curve.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "train_seconds",
                "inference_seconds", "parameters", "peak_memory_mb"):  # fmt: skip
        assert key in metrics, key
    assert metrics["examples"] == 60 and metrics["accuracy"] > 0.8
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    data = json.loads((run_dir / "data.json").read_text())
    assert data["sizes"] == {"train": 54, "valid": 6, "test": 60, "unsup": 30}
    assert len(data["checksums"]["test.content_sha256"]) == 64
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions.columns) == ["id", "label", "prob_positive", "prediction"] and len(predictions) == 60
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["seed"] == 42 and "scikit-learn" in environment["packages"]
    assert not list(run_dir.glob("**/*.tmp"))


def test_evaluate_and_predict(trained_run, capsys, monkeypatch) -> None:
    root, run_dir = trained_run
    code, out, err = run_cli(["evaluate", str(run_dir)], capsys)
    assert code == 0, err
    assert "accuracy" in out and list((run_dir / "evaluations").glob("*.json"))

    code, out, _ = run_cli(["predict", str(run_dir), "a great and wonderful film", "awful boring mess"], capsys)
    assert code == 0 and "positive" in out and "negative" in out

    kaggle = root / "testData.tsv"
    kaggle.write_text('id\treview\n"12_8"\t"great superb film"\n"13_2"\t"awful dull film"\n')
    submission = root / "submission.csv"
    code, _, err = run_cli(
        ["predict", str(run_dir), "--file", str(kaggle), "--kaggle-submission", str(submission)], capsys
    )
    assert code == 0, err
    assert submission.read_text().splitlines() == ["id,sentiment", '"12_8",1', '"13_2",0']

    import io

    # One text per stdin line, blank lines skipped; texts made of the training cue words.
    lines = ["wonderful excellent loved", "terrible awful hated", "", "great wonderful", "boring awful"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code, out, err = run_cli(["predict", str(run_dir)], capsys)
    assert code == 0, err
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")] for line in out.splitlines() if line.startswith("│")
    ]
    assert [(row[0], row[1], row[4]) for row in rows] == [
        ("0", "positive", "wonderful excellent loved"),
        ("1", "negative", "terrible awful hated"),
        ("2", "positive", "great wonderful"),
        ("3", "negative", "boring awful"),
    ]


def test_benchmark_writes_leaderboard(tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "imdb")
    code, _out, err = run_cli(
        ["benchmark", "--models", "tfidf-lr,nbsvm", "--data", str(tmp_path / "imdb"), "--output-dir",
         str(tmp_path / "bench"), "--set", "model.params.min_df=1", "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    board = pd.read_csv(tmp_path / "bench" / "leaderboard.csv")
    assert sorted(board["label"]) == ["nbsvm", "tfidf-lr"]
    assert "| rank |" in (tmp_path / "bench" / "leaderboard.md").read_text()


def test_models_and_show_config(capsys) -> None:
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "nbsvm" in out and "tfidf-lr" in out
    code, out, _ = run_cli(["show-config", "nbsvm", "--set", "seed=3"], capsys)
    assert code == 0 and "seed: 3" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "tfidf-lr", "--data", "/no/such/place"], "does not exist"),
        (["train", "tfidf-lr", "--set", "training.learning_rate=0.8"], "training.learning_rate"),
        (["train", "no-such-model"], "neither a config file nor a registered model"),
        (["evaluate", "/no/such/run"], "not a run folder"),
        (["predict", "/no/such/run", "text"], "not a run folder"),
    ],
)
def test_user_errors_exit_2_with_one_line(args: list[str], expected: str, capsys) -> None:
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_data_leaves_no_run_folder(tmp_path, capsys) -> None:
    bad = tmp_path / "reviews.csv"
    bad.write_text("text,label\n" + "".join(f"film number {index},pos\n" for index in range(8)))
    code, _, err = run_cli(
        ["train", "tfidf-lr", "--data", str(bad), "--output-dir", str(tmp_path / "runs")], capsys
    )
    assert code == 2 and "one class only" in err
    assert not (tmp_path / "runs").exists()


def test_unwritable_output_dir(tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "imdb")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(
        ["train", "tfidf-lr", "--data", str(tmp_path / "imdb"), "--output-dir", str(blocker / "runs")], capsys
    )
    assert code == 2 and "writable" in err
    if os.geteuid() != 0:  # root can write anywhere, so only check permissions as a normal user
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        code, _, err = run_cli(
            ["train", "tfidf-lr", "--data", str(tmp_path / "imdb"), "--output-dir", str(locked / "runs")], capsys
        )
        assert code == 2 and "writable" in err


def test_corrupt_saved_model_is_a_clear_error(trained_run, tmp_path, capsys) -> None:
    import shutil

    _, run_dir = trained_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "model" / "coef.npy").write_bytes(b"garbage")
    code, _, err = run_cli(["predict", str(copy), "some text"], capsys)
    assert code == 2 and "coef.npy was altered" in err  # the checksums recorded at save time
    (copy / "model" / "manifest.json").unlink()  # a run from before manifests: the loader's own check
    code, _, err = run_cli(["predict", str(copy), "some text"], capsys)
    assert code == 2 and "cannot be loaded" in err
    code, _, err = run_cli(["predict", str(run_dir), "   "], capsys)
    assert code == 2 and "empty" in err


def test_quiet_is_quiet_after_a_verbose_command_in_the_same_process() -> None:
    """--quiet used to keep the log handler an earlier command in the process had added (INFO lines
    then broke the one-line error of a later, quiet command: seen in the suite)."""
    import logging

    from rich.logging import RichHandler

    from imdb_sentiment.cli.app import setup_logging

    logger = logging.getLogger("imdb_sentiment")
    setup_logging(quiet=False)
    assert any(isinstance(handler, RichHandler) for handler in logger.handlers)
    setup_logging(quiet=True)
    assert not any(isinstance(handler, RichHandler) for handler in logger.handlers)
