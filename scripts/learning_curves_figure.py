#!/usr/bin/env python
"""The few-label figure of the README: a benchmark's learning curves joined by runs measured apart.

Rows too costly for a whole grid of sizes and seeds on a CPU (a language model scoring thousands of
test reviews) are trained once, with ``train``, on their own (often smaller) test sample. This draws
them into the benchmark's learning-curve figure: a run that read labelled reviews as a point at its
number of training reviews, a run that read none as a dashed line across the sizes; both with the 95%
interval of their accuracy::

    PYTHONPATH=src python scripts/learning_curves_figure.py runs/few-labels docs/learning_curves.png \\
        --point llm-sft=runs/llm-sft-few-labels-... --flat llm-score=runs/llm-score-zero-label-...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from imdb_sentiment.evaluation.metrics import accuracy_interval
from imdb_sentiment.evaluation.plots import plot_learning_curves


def run_accuracy(run: Path) -> dict[str, float]:
    """A run's test accuracy, its 95% interval and how many training reviews it read."""
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    low, high = metrics.get("accuracy_ci95_low"), metrics.get("accuracy_ci95_high")
    if low is None or high is None:  # scored on the whole test set: the interval from the count
        low, high = accuracy_interval(metrics["accuracy"], metrics["examples"])
    return {"accuracy": metrics["accuracy"], "low": low, "high": high, "train_examples": metrics["train_examples"]}


def named_runs(pairs: list[str]) -> dict[str, dict[str, float]]:
    runs = {}
    for pair in pairs:
        name, _, folder = pair.partition("=")
        if not folder:
            raise SystemExit(f"{pair!r}: give NAME=RUN_FOLDER")
        runs[name] = run_accuracy(Path(folder))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path, help="A benchmark output folder (its leaderboard.csv).")
    parser.add_argument("figure", type=Path, help="The PNG to write.")
    parser.add_argument("--point", action="append", default=[], help="NAME=RUN: a run that read labels.")
    parser.add_argument("--flat", action="append", default=[], help="NAME=RUN: a run that read no label.")
    args = parser.parse_args()
    board = pd.read_csv(args.benchmark / "leaderboard.csv")
    curves: dict[str, list[dict]] = {}
    for row in board.to_dict("records"):
        curves.setdefault(row["label"], []).append(row)
    plot_learning_curves(curves, args.figure, named_runs(args.point), named_runs(args.flat))
    print(args.figure)


if __name__ == "__main__":
    main()
