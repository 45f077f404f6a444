"""Leaderboard, report and analyze on runs of three classes (negative / neutral / positive), and boards
that mix tasks; binary boards keep their columns (tests/pipelines/test_benchmark.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from helpers import THREE_CLASSES, run_cli, tiny_three_class_reviews

from imdb_sentiment.pipelines import report as report_module
from imdb_sentiment.pipelines.benchmark import run_benchmark
from imdb_sentiment.pipelines.leaderboard import (
    BenchmarkResult,
    RunRecord,
    aggregate,
    grouped_tables,
    leaderboard_markdown,
    leaderboard_table,
)
from imdb_sentiment.pipelines.report import write_report
from imdb_sentiment.pipelines.suites import Suite, SuiteRow, expand_suite

FAST = ["model.params.min_df=1"]


def write_table(path: Path, size: int, seed: int) -> Path:
    reviews = tiny_three_class_reviews(size, seed)
    labels = [THREE_CLASSES.names[label] for label in reviews.labels]
    pd.DataFrame({"text": reviews.texts, "label": labels}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def three_class_data(tmp_path_factory) -> Path:
    """train.csv and test.csv of three classes in three/, with MR sentences (two classes) in mr/ beside it."""
    root = tmp_path_factory.mktemp("three-class")
    (root / "three").mkdir()
    write_table(root / "three" / "train.csv", 90, 0)
    write_table(root / "three" / "test.csv", 30, 1)
    (root / "mr").mkdir()
    (root / "mr" / "rt-polarity.pos").write_text("a great wonderful film\nloved it\n")
    (root / "mr" / "rt-polarity.neg").write_text("awful and boring\nterrible film\n")
    return root


def data_overrides(root: Path, ordered: bool = False) -> list[str]:
    overrides = [f"data.path={json.dumps(str(root / 'three' / 'train.csv'))}",
                 f"data.test_path={json.dumps(str(root / 'three' / 'test.csv'))}", *FAST]  # fmt: skip
    return overrides + (["data.labels=[negative,neutral,positive]", "data.ordinal=true"] if ordered else [])


def test_a_three_class_suite_gets_its_own_columns_analysis_and_report(three_class_data, tmp_path) -> None:
    out = tmp_path / "bench"
    suite = Suite(name="three", rows=[SuiteRow(config="tfidf-lr"),
                                      SuiteRow(config="tfidf-lr", name="tfidf-lr-c", set=["model.params.C=0.3"])])  # fmt: skip
    result, _ = run_benchmark(suite, data_overrides(three_class_data, ordered=True), out, show_progress=False)
    assert [record.status for record in result.records] == ["completed"] * 2, [r.error for r in result.records]
    markdown = (out / "leaderboard.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| rank |"))
    for column in ("| accuracy |", "| macro-F1 |", "| MAE |", "| within one % |", "| ROC-AUC (one-vs-rest) |"):
        assert column in header
    assert (
        "| F1 |" not in header
        and "- Classes: negative, neutral, positive; MAE in steps of their order." in markdown
    )
    board = pd.read_csv(out / "leaderboard.csv").set_index("label")
    assert board.loc["tfidf-lr", "classes"] == "negative, neutral, positive"
    assert 0 <= board.loc["tfidf-lr", "mae_mean"] <= 2 and "f1_mean" not in board
    assert "per_class.neutral.recall_mean" in board  # every number of metrics.json reaches the CSV

    analysis = json.loads((out / "tfidf-lr" / "analysis" / "analysis.json").read_text())
    assert len(analysis["confusion_matrix"]) == 3 and set(analysis["per_class"]) == set(THREE_CLASSES.names)
    assert analysis["ordinal"]["mae_units"] == "steps" and "out_of_domain" not in analysis
    assert "MR" in analysis["out_of_domain_skipped"]  # MR is sentiment: not these classes, so not scored
    for mistake in analysis["confident_mistakes"]:
        assert mistake["label"] in THREE_CLASSES.names and mistake["predicted"] != mistake["label"]
    page = (out / "report.html").read_text()
    assert "Classes: negative, neutral, positive" in page and "macro-F1" in page and "weakest class" in page
    verdicts = re.findall(r"true label [^<]*", page)  # the confident mistakes name their classes
    assert verdicts and all(
        re.fullmatch(r"true label (\w+); predicted (\w+), P\(\2\) [\d.]+, P\(\1\) [\d.]+", v) for v in verdicts
    )
    named = {"text": "an okay <i>film</i>", "label": "neutral", "predicted": "positive", "confidence": 0.8,
             "prob_true": 0.15}  # fmt: skip
    assert "true label neutral; predicted positive, P(positive) 0.800, P(neutral) 0.150" in report_module._mistake(
        named
    )


def test_a_board_mixing_class_sets_gets_one_table_per_task(tmp_path) -> None:
    # Runs of different tasks are never ranked together: one table per class set, each with its columns.
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm")])
    planned, _ = expand_suite(suite, ["data.path=unused"], tmp_path, False, False)
    binary = {"accuracy": 0.9, "f1": 0.9, "macro_f1": 0.9, "roc_auc": 0.95, "ece": 0.01}
    three = {"accuracy": 0.6, "macro_f1": 0.55, "roc_auc": 0.7, "ece": 0.05, "mae": 0.5, "within_one": 0.9}
    planned[1].run_dir.mkdir(parents=True)
    (planned[1].run_dir / "data.json").write_text(
        json.dumps({"classes": {"names": ["1", "2", "3"], "ordered": True}})
    )
    records = [
        RunRecord(planned[0], "completed", metrics=binary),
        RunRecord(planned[1], "completed", metrics=three),
    ]
    board = aggregate(records)
    lines = grouped_tables(board, "##")
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Classes: negative, positive", "## Classes: 1, 2, 3"]
    sentiment_table, ratings_table = (lines[lines.index(heading) + 2] for heading in headings)
    assert "| F1 |" in sentiment_table and "macro" not in sentiment_table and "| tfidf-lr |" in sentiment_table
    assert "| macro-F1 | MAE | within one % |" in ratings_table and "| F1 |" not in ratings_table
    # A board of binary runs alone: its columns as ever, though metrics.json now holds macro_f1 too.
    alone = leaderboard_table(aggregate([RunRecord(planned[0], "completed", metrics=binary)]))
    assert (
        "macro" not in alone
        and "| F1 | ROC-AUC |" in alone
        and "Classes" not in "".join(grouped_tables(board[:1], "##"))
    )
    # The page and leaderboard.md: a table (and its cost table) per class set, under a heading naming it.
    result = BenchmarkResult(suite, tmp_path, records, [])
    markdown = leaderboard_markdown(result, board)
    assert "## Classes: negative, positive" in markdown and "## Classes: 1, 2, 3" in markdown
    page = write_report(result, board).read_text()
    assert page.count("<h3>Classes: ") == 2 and page.count("Cost, speed and size") == 2


def test_analyze_a_three_class_run(three_class_data, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    code, _, err = run_cli(["train", "tfidf-lr", "--data", str(three_class_data / "three" / "train.csv"),
                            "--output-dir", str(out), *(f"--set={item}" for item in data_overrides(three_class_data)), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    run_dir = next(out.iterdir())
    code, stdout, err = run_cli(["analyze", str(run_dir)], capsys)
    assert code == 0, err
    assert "recall of neutral" in stdout and "Out of domain: not scored" in stdout
    markdown = (run_dir / "analysis" / "analysis.md").read_text()
    assert "## Per class" in markdown and "| true ↓ predicted → | negative | neutral | positive |" in markdown
    assert (
        "| true label | predicted | P(predicted) | P(true) | review |" in markdown
        and "P(positive)" not in markdown
    )
    analysis = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert analysis["classes"]["names"] == list(THREE_CLASSES.names) and "ordinal" not in analysis
    assert sum(map(sum, analysis["confusion_matrix"])) == analysis["examples"] == 30
    assert (run_dir / "analysis" / "reliability.png").is_file()
    # An edited predictions.csv (a class the run never had) is one line, exit 2.
    predictions = run_dir / "predictions.csv"
    predictions.write_text(predictions.read_text().replace(",neutral,", ",mixed,", 1))
    code, _, err = run_cli(["analyze", str(run_dir)], capsys)
    assert code == 2 and "'mixed'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
