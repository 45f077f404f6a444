"""Bad inputs through the real ``imdb-sentiment`` process: exit code 2, one clear line, no traceback.

A module-scoped tiny nbsvm run (trained in-process in about a second) serves every test; each test
then runs the installed console script with subprocess, as a user would, except where
scripts/bad_inputs.sh (tests/test_bad_inputs_script.py) already runs the same refusal through the
real process: there :func:`cli_here` runs the same command in this process (``main()``, as the console
script does), which checks the message and exit code without another second of start-up per call.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest
import typer
from helpers import NullCapture, run_cli, write_tiny_parquet_imdb
from typer.models import ParameterInfo

from imdb_sentiment.cli import app

CLI = Path(sys.executable).with_name("imdb-sentiment")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    write_tiny_parquet_imdb(root / "imdb")
    args = ["train", "nbsvm", "--data", str(root / "imdb"), "--output-dir", str(root / "runs"), "--quiet",
            "--set", "model.params.min_df=1", "--set", "model.params.max_features=null"]  # fmt: skip
    code, _, err = run_cli(args, NullCapture())
    assert code == 0, err
    (run_dir,) = list((root / "runs").iterdir())
    return root, run_dir


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=120)


def cli_here(capsys, *args: str) -> subprocess.CompletedProcess[str]:
    """``cli(*args)`` in this process; for refusals whose real process scripts/bad_inputs.sh checks."""
    code, out, err = run_cli(list(args), capsys)
    return subprocess.CompletedProcess(["imdb-sentiment", *args], code, out, err)


def assert_user_error(result: subprocess.CompletedProcess[str], first_line: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(first_line), result.stderr


def test_predict_header_only_csv_names_the_file(tiny_run, capsys) -> None:
    root, run_dir = tiny_run
    header_only = root / "header-only.csv"
    header_only.write_text("id,text\n")
    result = cli_here(capsys, "predict", str(run_dir), "--file", str(header_only))  # bad_inputs.sh: header-only
    assert_user_error(result, f"error: {header_only} holds no texts")


def test_predict_empty_text_column_names_the_file(tiny_run) -> None:
    root, run_dir = tiny_run
    table = root / "blank-reviews.csv"
    table.write_text("id,review,text\n1,,good\n2,  ,bad\n")
    result = cli("predict", str(run_dir), "--file", str(table), "--text-column", "review")
    assert_user_error(result, f"error: {table} holds no texts: every value of column 'review' is empty")


def test_predict_empty_stdin(tiny_run) -> None:
    _, run_dir = tiny_run
    assert_user_error(cli("predict", str(run_dir), stdin="\n  \n"), "error: stdin held no texts")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["predict", "RUN", "--batch-size", "0", "text"], "--batch-size"),
        (["evaluate", "RUN", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "RUN", "--limit", "1"], "--limit"),
        (["train", "nbsvm", "--limit", "3"], "--limit"),
        (["train", "nbsvm", "--epochs", "0"], "--epochs"),
        (["train", "nbsvm", "--seed", "-1"], "--seed"),
        (["benchmark", "--test-limit", "1"], "--test-limit"),
        (["pretrain-mlm", "--output", "x", "--learning-rate", "0.8"], "--learning-rate"),
        (["embeddings", "train", "--seed", "-1"], "--seed"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(tiny_run, args: list[str], option: str) -> None:
    _, run_dir = tiny_run
    result = cli(*[str(run_dir) if arg == "RUN" else arg for arg in args])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Usage: imdb-sentiment") and f"Invalid value for '{option}'" in result.stderr


def _commands(typer_app: typer.Typer, prefix: str = ""):
    for command in typer_app.registered_commands:
        yield f"{prefix}{command.name or command.callback.__name__}".replace("_", "-"), command.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, f"{prefix}{group.name} ")


def _numeric_options(callback):
    """(name, typer ParameterInfo) of each int / float parameter (Optional included)."""
    for name, hint in typing.get_type_hints(callback, include_extras=True).items():
        if typing.get_origin(hint) is not typing.Annotated:
            continue
        base, *extras = typing.get_args(hint)
        kinds = set(typing.get_args(base)) - {type(None)} or {base}
        info = next((extra for extra in extras if isinstance(extra, ParameterInfo)), None)
        if info is not None and kinds <= {int, float}:
            yield name, info


def test_every_numeric_option_has_a_lower_bound() -> None:
    found = {(command, name): info for command, callback in _commands(app)
             for name, info in _numeric_options(callback)}  # fmt: skip
    assert {command for command, _ in found} == {"train", "evaluate", "predict", "benchmark", "pretrain-mlm", "serve",
                                                 "embeddings train", "embeddings coverage", "tune"}  # fmt: skip
    assert ("predict", "batch_size") in found and ("train", "limit") in found
    assert not [key for key, info in found.items() if info.min is None]
    assert (
        found[("train", "limit")].min == 4 and found[("train", "test_limit")].min == 2
    )  # data.limit / test_limit
    assert found[("benchmark", "limit")].min == 4 and found[("train", "epochs")].max == 1000


@pytest.mark.parametrize("command", ["evaluate", "data stats"])
def test_bogus_format_names_the_field(tiny_run, capsys, command: str) -> None:
    root, run_dir = tiny_run
    args = ["evaluate", str(run_dir)] if command == "evaluate" else ["data", "stats"]
    result = cli_here(capsys, *args, "--data", str(root / "imdb"), "--format", "bogus")  # bad_inputs.sh: both
    assert_user_error(result, "error: data.format: Input should be 'auto'")
    assert "(got 'bogus')" in result.stderr


def test_texts_with_no_known_word_are_flagged(tiny_run) -> None:
    root, run_dir = tiny_run
    texts = [
        "great wonderful film",
        "😀🎉🔥",
        "Отличный фильм, всем советую",
        "素晴らしい映画でした",
        "awful boring",
    ]
    result = cli("predict", str(run_dir), *texts)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "warning: 3 text(s) contain no word the model knows; their predictions are the model's prior."
    )
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in result.stdout.splitlines()
            if line.startswith("│")]  # fmt: skip
    assert [row[1] for row in rows] == ["positive", "positive", "positive", "positive", "negative"]
    assert [row[3] for row in rows] == ["100%", "0%", "0%", "0%", "100%"]

    output, submission = root / "known.csv", root / "known-kaggle.csv"
    result = cli("predict", str(run_dir), *texts, "--output", str(output), "--kaggle-submission", str(submission))
    assert result.returncode == 0 and "warning: 3 text(s)" in result.stderr
    frame = pd.read_csv(output)
    assert list(frame.columns) == ["id", "prob_positive", "prediction", "known_token_share"]
    assert frame["known_token_share"].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert submission.read_text().splitlines()[0] == "id,sentiment"


# --------------------------------------------------------------------------------------------------
# Run folders and writes


@pytest.mark.parametrize("link", ["same path", "symlink", "hard link"])
def test_predict_refuses_to_write_over_its_input_file(tiny_run, capsys, link: str) -> None:
    root, run_dir = tiny_run
    texts = root / f"texts-{link.replace(' ', '-')}.csv"
    texts.write_text("id,text\n1,a great film\n2,an awful film\n")
    output = {"same path": texts, "symlink": root / "out-symlink.csv", "hard link": root / "out-hard.csv"}[link]
    if link == "symlink":
        output.unlink(missing_ok=True)
        output.symlink_to(texts)
    elif link == "hard link":
        output.unlink(missing_ok=True)
        output.hardlink_to(texts)
    for option in ("--output", "--kaggle-submission"):  # bad_inputs.sh: same path, symlink, hard link
        result = cli_here(capsys, "predict", str(run_dir), "--file", str(texts), option, str(output))
        assert_user_error(result, f"error: {option} {output} is the same file as --file {texts}")
    assert texts.read_text() == "id,text\n1,a great film\n2,an awful film\n"


def test_predict_refuses_two_outputs_in_one_file(tiny_run, capsys) -> None:
    root, run_dir = tiny_run
    both = root / "both.csv"
    code, _, err = run_cli(["predict", str(run_dir), "good", "--output", str(both), "--kaggle-submission", str(both)],
                           capsys)  # fmt: skip
    assert code == 2 and "is the same file as --output" in err and not both.exists()


def test_a_model_folder_from_another_run_is_refused(tiny_run, tmp_path, capsys) -> None:
    """model/ (manifest included) copied from a run with another config: refused, not served under
    this run's name and metrics."""
    import shutil

    root, run_dir = tiny_run
    args = ["train", "nbsvm", "--data", str(root / "imdb"), "--output-dir", str(tmp_path / "other"), "--quiet",
            "--seed", "3", "--set", "model.params.min_df=1", "--set", "model.params.max_features=null"]  # fmt: skip
    assert run_cli(args, NullCapture())[0] == 0
    (other,) = (tmp_path / "other").iterdir()
    swapped = tmp_path / "swapped"
    shutil.copytree(run_dir, swapped, ignore=shutil.ignore_patterns("evaluations"))
    shutil.rmtree(swapped / "model")
    shutil.copytree(other / "model", swapped / "model")
    for command in (
        ["predict", str(swapped), "a great film"],
        ["evaluate", str(swapped)],
    ):  # bad_inputs.sh: predict
        assert_user_error(cli_here(capsys, *command), f"error: {swapped / 'model'} belongs to another run")
    assert not (swapped / "evaluations").exists()


def test_evaluate_and_analyze_never_write_through_a_link_out_of_the_run_folder(tiny_run, tmp_path, capsys) -> None:
    import shutil

    _, run_dir = tiny_run
    linked, elsewhere = tmp_path / "linked", tmp_path / "elsewhere"
    shutil.copytree(run_dir, linked, ignore=shutil.ignore_patterns("evaluations"))
    elsewhere.mkdir()
    for command, folder in (("evaluate", "evaluations"), ("analyze", "analysis")):
        (linked / folder).symlink_to(elsewhere)
        result = cli_here(capsys, command, str(linked))  # bad_inputs.sh: evaluate
        assert_user_error(result, f"error: {linked / folder} is a link that leads out of")
    assert list(elsewhere.iterdir()) == []
