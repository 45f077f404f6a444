"""``analyze RUN``: error analysis of a finished run, written into ``RUN/analysis/``.

Reads the run's own test predictions (``predictions.csv``) and the test texts they belong to, so it
works for every model kind without re-running the test set; only the out-of-domain check (a suite's
``out_of_domain`` set, MR sentences by default) needs the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.config import ExperimentConfig, build_data_config
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import SENTIMENT, LabelSpace
from imdb_sentiment.data.loaders import read_dataset
from imdb_sentiment.data.splits import PreparedData, load_data, resolve_data_path
from imdb_sentiment.errors import UserError
from imdb_sentiment.evaluation.analysis import error_analysis
from imdb_sentiment.evaluation.metrics import classification_metrics
from imdb_sentiment.evaluation.plots import plot_accuracy_by_group, plot_reliability_diagram
from imdb_sentiment.evaluation.predictions import read_class_column, read_probabilities
from imdb_sentiment.io_utils import write_json_atomic, write_text_atomic
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.pipelines.suites import OutOfDomainSet
from imdb_sentiment.runs import RunFolder

MR_FILE = "rt-polarity.pos"
DEFAULT_FOLDER = "mr"  # the default set (MR) is looked for in a folder of this name beside the data
DEFAULT_OUT_OF_DOMAIN = OutOfDomainSet()


def locate_out_of_domain(
    ood: OutOfDomainSet | None, data_path: Path | None, override: Path | None = None
) -> Path | None:
    """Where the out-of-domain set is: ``override`` (--ood-data), else the set's own path, else (the
    default MR set) a folder ``mr`` beside the data folder (``../mr`` next to ``../imdb``) when it is
    there. A path that was asked for and is not there is a UserError naming the option."""
    if override is not None:
        return check_out_of_domain_path(ood or DEFAULT_OUT_OF_DOMAIN, Path(override), "--ood-data")
    if ood is None:
        return None
    if ood.path is not None:
        return check_out_of_domain_path(ood, Path(ood.path).expanduser(), "out_of_domain.path")
    if data_path is None or ood.format != "mr":
        return None
    for candidate in (data_path.parent / DEFAULT_FOLDER, data_path.parent.parent / DEFAULT_FOLDER):
        if (candidate / MR_FILE).is_file():
            return candidate
    return None


def check_out_of_domain_path(ood: OutOfDomainSet, path: Path, option: str) -> Path:
    if ood.format == "mr" and not (path / MR_FILE).is_file():
        raise UserError(f"{option} {path}: no {MR_FILE} there; point it at the MR folder.")
    if not path.exists():
        raise UserError(f"{option} {path} does not exist.")
    return path


def run_data_path(config: ExperimentConfig) -> Path | None:
    try:
        return resolve_data_path(config.data.path)
    except UserError:
        return None


def read_out_of_domain(config: ExperimentConfig, ood: OutOfDomainSet, path: Path) -> TextDataset:
    """The out-of-domain set's test part (MR: every sentence, Latin-1), cleaned as the run's training
    data was."""
    update = {"path": str(path), "format": ood.format, "encoding": None, "limit": None, "test_limit": None,
              "test_path": None}  # fmt: skip
    if ood.format != "table":  # the run's label order and star ratings mean nothing to MR sentences
        update.update(
            {"labels": None, "ordinal": False, "target": "sentiment" if ood.format == "mr" else config.data.target}
        )
    spec = config.data.model_copy(update=update)
    examples = read_dataset(Path(path), spec).test
    if examples is None or not len(examples):
        raise UserError(f"{path}: no labelled test examples found for the out-of-domain set {ood.name}.")
    return examples


def out_of_domain_metrics(
    model: SentimentModel, examples: TextDataset, ood: OutOfDomainSet, path: Path, batch_size: int
) -> dict[str, Any]:
    """The model's metrics on the out-of-domain set (its classes are the run's)."""
    probabilities = model.predict_proba(examples.texts, batch_size=batch_size)
    metrics = classification_metrics(examples.labels, probabilities, model.classes)
    metrics.pop("confusion_matrix")
    return {"name": ood.name, "path": str(path), **metrics}


def run_classes(run: RunFolder) -> LabelSpace:
    """The classes a run predicts: model/model.json's, else data.json's; none recorded (a run from
    before classes were): sentiment."""
    for name in ("model/model.json", "data.json"):
        record = run.read_optional(name) or {}
        if "classes" in record:
            try:
                return LabelSpace.from_json(record["classes"])
            except ValueError as exc:
                raise UserError(f"{run.path / name}: classes: {exc}; was it edited?") from None
    return SENTIMENT


def read_predictions(run_dir: Path, classes: LabelSpace) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ids, true labels (class indices) and (n, K) probabilities of a run's predictions.csv."""
    path = run_dir / "predictions.csv"
    if not path.is_file():
        raise UserError(f"{run_dir} has no predictions.csv; the run did not finish its test evaluation.")
    try:
        frame = pd.read_csv(path, dtype={"id": str, "label": str, "prediction": str})
    except (OSError, ValueError) as exc:
        raise UserError(
            f"Cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}."
        ) from None
    if "id" not in frame.columns:
        raise UserError(f"{path} lacks the column 'id'; was it edited?")
    probabilities = read_probabilities(frame, classes, path)
    labels = read_class_column(frame, "label", classes, path)
    return [str(item) for item in frame["id"]], labels, probabilities


def analyze_run(
    run_dir: Path,
    ood_path: Path | None = None,
    data: PreparedData | None = None,
    model: SentimentModel | None = None,
    ood: OutOfDomainSet | None = DEFAULT_OUT_OF_DOMAIN,
    data_path: Path | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Analyse a finished run; writes ``analysis/analysis.json``, ``analysis.md`` and two figures.
    ``data`` / ``model``: already in memory (the benchmark passes them), else loaded from the run;
    ``data_path``: the run's data section read from another location (same layout and seed), with the
    default out-of-domain set looked for beside it. ``ood_path`` (--ood-data) overrides where the
    out-of-domain set ``ood`` is (None: no out-of-domain check). ``write=False``: compute only (the
    other ranks under a launcher, which take part in the out-of-domain predictions)."""
    run = RunFolder.finished(run_dir)
    run_dir, config = run.path, configure(run.raw_config(), for_training=False)
    location = locate_out_of_domain(ood, Path(data_path) if data_path else run_data_path(config), ood_path)
    classes = run_classes(run)
    ids, labels, probabilities = read_predictions(run_dir, classes)
    # Checked before the data and model load: a read-only run folder, or analysis/ linked out of it.
    folder = run.output_folder("analysis") if write else None
    if data is None and data_path is not None:
        data = load_data(build_data_config({**config.data.model_dump(), "path": str(data_path)}))
    test = (data or load_data(config.data)).test
    same = test.classes.names == classes.names and np.array_equal(test.labels, labels)
    if not same or ids != [str(item) for item in test.ids]:
        raise UserError(
            f"The test data found now ({len(test):,} reviews) is not the data {run_dir.name} was tested on "
            f"({len(ids):,} predictions): point --data at the run's dataset."
        )
    analysis = error_analysis(test.texts, test.labels, probabilities, classes)
    if location is not None:
        ood = ood or DEFAULT_OUT_OF_DOMAIN
        examples = read_out_of_domain(config, ood, location)
        if examples.classes.names != classes.names:  # e.g. MR (sentiment) for a run on star ratings
            analysis["out_of_domain_skipped"] = (
                f"{ood.name} ({location}) has the classes {', '.join(examples.classes.names[:8])}, not the run's"
            )
        else:
            if model is None:
                run.verify_model()  # altered files, or a model/ from another run: one line
                model = SentimentModel.load(run.model_dir)
            analysis["out_of_domain"] = out_of_domain_metrics(
                model, examples, ood, location, config.training.eval_batch_size
            )
    if folder is not None:
        write_analysis(folder, analysis, config.run_name)
    return analysis


def write_analysis(folder: Path, analysis: dict[str, Any], title: str) -> None:
    """analysis.json, analysis.md and the two figures, each written atomically; an unwritable folder
    (read-only file system, full disk) is one line."""
    try:
        folder.mkdir(exist_ok=True)
        write_json_atomic(folder / "analysis.json", analysis)
        write_text_atomic(folder / "analysis.md", analysis_markdown(analysis, title))
        classes = LabelSpace.from_json(analysis.get("classes"))
        plot_reliability_diagram(analysis["calibration"]["bins"], folder / "reliability.png", title, classes.size)
        plot_accuracy_by_group(analysis["accuracy_by_length"], folder / "accuracy_by_length.png", title,
                               "review length (deciles)")  # fmt: skip
    except OSError as exc:
        raise UserError(
            f"Cannot write the analysis into {folder} ({exc.strerror or exc}): it must be a writable folder "
            "with free space."
        ) from None


def sentiment(label: int) -> str:
    return "positive" if label else "negative"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _cell(text: str, size: int = 300) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= size else text[:size] + " …"


def analysis_markdown(analysis: dict[str, Any], title: str) -> str:
    classes = LabelSpace.from_json(analysis.get("classes"))
    lines = [f"# Error analysis: {title}", "",
             f"Test accuracy {_percent(analysis['accuracy'])} on {analysis['examples']:,} reviews; "
             f"expected calibration error {analysis['calibration']['ece']:.4f}"
             + ("." if classes.is_sentiment else " (of the predicted class).")]  # fmt: skip
    if ordinal := analysis.get("ordinal"):
        unit = "" if ordinal["mae_units"] == "steps" else " (in label units)"
        lines.append(
            f"Mean absolute error {ordinal['mae']:.3f}{unit}; within one step {_percent(ordinal['within_one'])}."
        )
    ood = analysis.get("out_of_domain")
    if ood:
        lines.append(f"Out of domain ({ood.get('name', 'MR')}, {ood['examples']:,} examples): "
                     f"accuracy {_percent(ood['accuracy'])}.")  # fmt: skip
    if skipped := analysis.get("out_of_domain_skipped"):
        lines.append(f"Out of domain: not scored, {skipped}.")
    if not classes.is_sentiment:
        lines += _class_sections(analysis, classes)
    lines += ["", "## Reviews with negation or contrast words", "", "| cue | with | without |", "|---|---|---|"]
    for name, row in analysis["accuracy_by_cues"].items():
        lines.append(f"| {name} | {_percent(row['with']['accuracy'])} ({row['with']['count']:,}) "
                     f"| {_percent(row['without']['accuracy'])} ({row['without']['count']:,}) |")  # fmt: skip
    lines += ["", "## Accuracy by review length", "", "| words | reviews | accuracy |", "|---|---|---|"]
    lines += [
        f"| {row['group']} | {row['count']:,} | {_percent(row['accuracy'])} |"
        for row in analysis["accuracy_by_length"]
    ]
    lines += ["", "## Most confident mistakes", ""]
    if classes.is_sentiment:
        lines += ["| true label | predicted | P(positive) | review |", "|---|---|---|---|"]
        for row in analysis["confident_mistakes"]:
            true, predicted = sentiment(row["label"]), sentiment(1 - row["label"])
            lines.append(f"| {true} | {predicted} | {row['prob_positive']:.3f} | {_cell(row['text'])} |")
    else:
        lines += ["| true label | predicted | P(predicted) | P(true) | review |", "|---|---|---|---|---|"]
        lines += [f"| {_cell(row['label'], 40)} | {_cell(row['predicted'], 40)} | {row['confidence']:.3f} "
                  f"| {row['prob_true']:.3f} | {_cell(row['text'])} |" for row in analysis["confident_mistakes"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def _class_sections(analysis: dict[str, Any], classes: LabelSpace) -> list[str]:
    """Per-class errors and the confusion matrix of a task other than sentiment."""
    names = [_cell(name, 40) for name in classes.names]
    lines = ["", "## Per class", "", "| class | reviews | recall | precision | most often mistaken for |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, row in zip(names, analysis["per_class"].values(), strict=True):
        mistaken = _cell(row["most_mistaken_for"], 40) if row["most_mistaken_for"] is not None else "–"
        lines.append(f"| {name} | {row['count']:,} | {_percent(row['recall'])} | {_percent(row['precision'])} "
                     f"| {mistaken} |")  # fmt: skip
    lines += ["", "## Confusion matrix (rows: true class, columns: predicted)", "",
              "| true ↓ predicted → | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]  # fmt: skip
    for name, row in zip(names, analysis["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{value:,}" for value in row) + " |")
    return lines
