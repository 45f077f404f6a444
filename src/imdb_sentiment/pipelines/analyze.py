"""``analyze RUN``: error analysis of a finished run, written into ``RUN/analysis/``.

Reads the run's own test predictions (``predictions.csv``) and the test texts they belong to, so it
works for every model kind without re-running the test set; only the out-of-domain check (MR
sentences) needs the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.config import ExperimentConfig, build_config, read_yaml
from imdb_sentiment.data.loaders import read_dataset
from imdb_sentiment.data.splits import PreparedData, load_data, resolve_data_path
from imdb_sentiment.errors import UserError
from imdb_sentiment.evaluation.analysis import error_analysis
from imdb_sentiment.evaluation.metrics import classification_metrics
from imdb_sentiment.evaluation.plots import plot_accuracy_by_group, plot_reliability_diagram
from imdb_sentiment.io_utils import write_json_atomic, write_text_atomic
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.runs import check_run_dir

MR_FILE = "rt-polarity.pos"


def default_ood_path(config: ExperimentConfig) -> Path | None:
    """The MR sentences beside the IMDB data (``../shared/data/mr`` next to ``../shared/data/imdb``),
    if they are there."""
    try:
        data_path = resolve_data_path(config.data.path)
    except UserError:
        return None
    for candidate in (data_path.parent / "mr", data_path.parent.parent / "mr"):
        if (candidate / MR_FILE).is_file():
            return candidate
    return None


def out_of_domain_metrics(
    model: SentimentModel, config: ExperimentConfig, path: Path, batch_size: int
) -> dict[str, Any]:
    """Accuracy on the MR sentence-polarity snippets (Latin-1), cleaned as the run's training data was."""
    spec = config.data.model_copy(update={"path": str(path), "format": "mr", "encoding": None, "limit": None,
                                          "test_limit": None, "test_path": None})  # fmt: skip
    sentences = read_dataset(Path(path), spec).test  # MR has no split: all sentences are "test"
    if sentences is None or not len(sentences):
        raise UserError(f"{path}: no MR sentences found.")
    probabilities = model.predict_proba(sentences.texts, batch_size=batch_size)
    metrics = classification_metrics(sentences.labels, probabilities)
    metrics.pop("confusion_matrix")
    return {"name": "mr", "path": str(path), **metrics}


def read_predictions(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "predictions.csv"
    if not path.is_file():
        raise UserError(f"{run_dir} has no predictions.csv; the run did not finish its test evaluation.")
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read {path}: {exc}.") from None
    if not {"id", "label", "prob_positive"} <= set(frame.columns):
        raise UserError(f"{path} lacks the columns id, label, prob_positive; was it edited?")
    return frame


def analyze_run(
    run_dir: Path,
    ood_path: Path | None = None,
    data: PreparedData | None = None,
    model: SentimentModel | None = None,
    detect_ood: bool = True,
) -> dict[str, Any]:
    """Analyse a finished run; writes ``analysis/analysis.json``, ``analysis.md`` and two figures.
    ``data`` / ``model``: already in memory (the benchmark passes them), else loaded from the run."""
    run_dir = check_run_dir(Path(run_dir))
    config = build_config(read_yaml(run_dir / "config.yaml"), for_training=False)
    predictions = read_predictions(run_dir)
    test = (data or load_data(config.data)).test
    if list(predictions["id"]) != [str(item) for item in test.ids]:
        raise UserError(
            f"The test data found now ({len(test):,} reviews) is not the data {run_dir.name} was tested on "
            f"({len(predictions):,} predictions): point --data at the run's dataset."
        )
    positive = predictions["prob_positive"].to_numpy(dtype=float)
    probabilities = np.stack([1.0 - positive, positive], axis=1)
    analysis = error_analysis(test.texts, test.labels, probabilities)
    ood_path = ood_path or (default_ood_path(config) if detect_ood else None)
    if ood_path is not None:
        model = model or SentimentModel.load(run_dir / "model")
        analysis["out_of_domain"] = out_of_domain_metrics(model, config, ood_path, config.training.eval_batch_size)
    folder = run_dir / "analysis"
    folder.mkdir(exist_ok=True)
    write_json_atomic(folder / "analysis.json", analysis)
    write_text_atomic(folder / "analysis.md", analysis_markdown(analysis, config.run_name))
    plot_reliability_diagram(analysis["calibration"]["bins"], folder / "reliability.png", config.run_name)
    plot_accuracy_by_group(analysis["accuracy_by_length"], folder / "accuracy_by_length.png",
                           config.run_name, "review length (deciles)")  # fmt: skip
    return analysis


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def analysis_markdown(analysis: dict[str, Any], title: str) -> str:
    lines = [f"# Error analysis: {title}", "",
             f"Test accuracy {_percent(analysis['accuracy'])} on {analysis['examples']:,} reviews; "
             f"expected calibration error {analysis['calibration']['ece']:.4f}."]  # fmt: skip
    ood = analysis.get("out_of_domain")
    if ood:
        lines.append(f"Out of domain (MR sentences, {ood['examples']:,}): accuracy {_percent(ood['accuracy'])}.")
    lines += ["", "## Reviews with negation or contrast words", "", "| cue | with | without |", "|---|---|---|"]
    for name, row in analysis["accuracy_by_cues"].items():
        lines.append(f"| {name} | {_percent(row['with']['accuracy'])} ({row['with']['count']:,}) "
                     f"| {_percent(row['without']['accuracy'])} ({row['without']['count']:,}) |")  # fmt: skip
    lines += ["", "## Accuracy by review length", "", "| words | reviews | accuracy |", "|---|---|---|"]
    lines += [
        f"| {row['group']} | {row['count']:,} | {_percent(row['accuracy'])} |"
        for row in analysis["accuracy_by_length"]
    ]
    lines += ["", "## Most confident mistakes", "", "| label | P(positive) | review |", "|---|---|---|"]
    for row in analysis["confident_mistakes"]:
        text = " ".join(row["text"].split()).replace("|", "\\|")
        text = text if len(text) <= 300 else text[:300] + " …"
        lines.append(f"| {'positive' if row['label'] else 'negative'} | {row['prob_positive']:.3f} | {text} |")
    return "\n".join(lines) + "\n"
