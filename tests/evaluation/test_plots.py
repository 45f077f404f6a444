"""The learning-curve figure: curves, runs measured at one size, and runs that read no label."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from imdb_sentiment.evaluation import plots


def test_learning_curves_draw_points_and_zero_label_lines(tmp_path, monkeypatch) -> None:
    drawn: dict[str, list] = {}
    real_save = plots._save

    def keep_axes(figure, path):
        axis = figure.axes[0]
        drawn["labels"] = axis.get_legend_handles_labels()[1]
        drawn["lines"] = [line.get_ydata()[0] for line in axis.get_lines() if line.get_linestyle() == "--"]
        real_save(figure, path)

    monkeypatch.setattr(plots, "_save", keep_axes)
    curve = [
        {"train_examples_mean": n, "accuracy_mean": a, "accuracy_std": 0.01} for n, a in ((14, 0.6), (57, 0.7))
    ]
    plots.plot_learning_curves({"nbsvm": curve}, tmp_path / "curves.png",
                               points={"llm-sft": {"train_examples": 57, "accuracy": 0.856, "low": 0.84, "high": 0.87}},
                               flat={"llm-score": {"accuracy": 0.8245, "low": 0.807, "high": 0.841}})  # fmt: skip
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert drawn["labels"] == ["nbsvm", "llm-score (no labels)", "llm-sft"]
    assert drawn["lines"] == [0.8245]


def test_the_readme_figure_script_joins_a_benchmark_and_separate_runs(tmp_path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    pd.DataFrame({"label": ["nbsvm", "nbsvm"], "train_size": [16, 64], "train_examples_mean": [14, 57],
                  "accuracy_mean": [0.58, 0.68], "accuracy_std": [0.01, 0.01]}).to_csv(bench / "leaderboard.csv")  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"accuracy": 0.8, "examples": 2000, "train_examples": 0}')
    script = Path(__file__).resolve().parents[2] / "scripts" / "learning_curves_figure.py"
    done = subprocess.run([sys.executable, str(script), str(bench), str(tmp_path / "f.png"), "--flat", f"llm={run}"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f.png").stat().st_size > 0
