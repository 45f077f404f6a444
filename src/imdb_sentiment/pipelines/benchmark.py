"""Benchmark: train several models on the same data and rank them on the test set.

Every config is validated before the first model trains. Data is loaded once per distinct data
config. Each model gets its own ordinary run folder; the leaderboard (Markdown + CSV) is rebuilt from
the run folders' metrics.json, so it can always be traced back to a run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_sentiment.config import ExperimentConfig, load_config
from imdb_sentiment.data.splits import PreparedData, load_data
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import atomic_path, write_text_atomic
from imdb_sentiment.pipelines.experiment import run_experiment

logger = logging.getLogger("imdb_sentiment.benchmark")

COLUMNS = {
    "model": "model",
    "accuracy": "accuracy",
    "f1": "F1",
    "roc_auc": "ROC-AUC",
    "train_seconds": "train s",
    "seconds_per_epoch": "s/epoch",
    "inference_seconds": "test inference s",
    "parameters": "parameters",
    "model_size_mb": "size MB",
    "train_examples": "train reviews",
    "examples": "test reviews",
    "run_dir": "run folder",
}


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=list(COLUMNS))
        return frame.sort_values("accuracy", ascending=False, na_position="last").reset_index(drop=True)

    def to_markdown_table(self) -> str:
        frame = self.frame()
        lines = ["| rank | " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
        for rank, row in enumerate(frame.to_dict("records"), start=1):
            cells = [_format(key, row.get(key)) for key in COLUMNS]
            lines.append(f"| {rank} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def write(self, output_dir: Path) -> list[Path]:
        markdown, csv = output_dir / "leaderboard.md", output_dir / "leaderboard.csv"
        write_text_atomic(markdown, "# Leaderboard\n\n" + self.to_markdown_table() + "\n")
        with atomic_path(csv) as tmp:
            self.frame().to_csv(tmp, index=False)
        return [markdown, csv]


def _format(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if key in ("accuracy", "f1", "roc_auc"):
        return f"{value:.4f}"
    if key in ("parameters", "train_examples", "examples"):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def leaderboard_row(metrics: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    row = {key: metrics.get(key) for key in COLUMNS}
    row["model"] = metrics.get("run_name") or metrics.get("model")
    row["run_dir"] = str(run_dir)
    history = run_dir / "history.csv"
    if history.exists():
        frame = pd.read_csv(history)
        if "epoch" in frame and len(frame):
            row["seconds_per_epoch"] = metrics["train_seconds"] / len(frame)
    return row


def run_benchmark(
    names: list[str], overrides: list[str], output_dir: Path, show_progress: bool = True
) -> tuple[Leaderboard, list[Path]]:
    configs: list[ExperimentConfig] = [
        load_config(name, [*overrides, f"output_dir={json.dumps(str(output_dir))}"]) for name in names
    ]
    board = Leaderboard()
    data_cache: dict[str, PreparedData] = {}
    for config in configs:
        key = json.dumps(config.data.model_dump(mode="json"), sort_keys=True)
        if key not in data_cache:
            data_cache[key] = load_data(config.data)
        logger.info("benchmark: training %s", config.run_name)
        try:
            result = run_experiment(config, data=data_cache[key], show_progress=show_progress)
        except UserError:
            raise
        except Exception as exc:  # one broken model must not lose the others' results
            logger.error("benchmark: %s failed: %s", config.run_name, exc)
            board.rows.append({"model": f"{config.run_name} (failed: {type(exc).__name__})"})
            continue
        board.rows.append(leaderboard_row(result.metrics, result.run_dir))
        board.write(output_dir)  # keep the leaderboard current after every model
    return board, board.write(output_dir)
