"""Load a finished run and classify texts with exactly the preprocessing it was trained with.

Used by ``predict``, ``evaluate`` and the REST API (serving/api.py).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.config import build_data_config
from imdb_sentiment.data.cleaning import clean_texts
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import LabelSpace, clip
from imdb_sentiment.data.loaders import check_texts, detect_format, read_dataset, read_texts_table
from imdb_sentiment.data.splits import evaluation_split, resolve_data_path, stratified_sample
from imdb_sentiment.errors import UserError
from imdb_sentiment.evaluation.metrics import evaluate_model
from imdb_sentiment.io_utils import write_json_atomic
from imdb_sentiment.models.configure import configure
from imdb_sentiment.runs import RunFolder

if TYPE_CHECKING:
    from imdb_sentiment.serving.backends import ServingBackend


class Predictor:
    """A run's model behind a serving backend (:mod:`.backends`: ``native`` = the run's own
    PyTorch / scikit-learn model, ``onnx`` = its ONNX export on onnxruntime, or any registered one),
    with the run's own cleaning in front of it."""

    # Whether the model's files matched the checksums recorded when it was saved (False: a run saved
    # before manifests existed, whose files cannot be checked).
    files_checked: bool = False

    def __init__(self, runner: ServingBackend, run_dir: Path) -> None:
        self.runner, self.config, self.run_dir = runner, runner.config, run_dir

    @classmethod
    def from_run(cls, run_dir: Path, onnx: bool = False, backend: str | None = None) -> Predictor:
        """``backend``: a registered serving backend's name (default ``native``; ``onnx=True`` means ``onnx``)."""
        from imdb_sentiment.serving.backends import load_backend

        run = RunFolder.finished(run_dir)
        run_dir, config = run.path, configure(run.raw_config(), for_training=False)
        # Missing or altered files, or a model/ from another run: one line, before loading.
        checked = run.verify_model() is not None
        predictor = cls(load_backend(backend or ("onnx" if onnx else "native"), run_dir, config), run_dir)
        predictor.files_checked = checked
        return predictor

    @property
    def model(self) -> Any:
        """The model the backend runs: the run's SentimentModel for ``native``, else the backend itself."""
        return getattr(self.runner, "model", self.runner)

    @property
    def classes(self) -> LabelSpace:
        """The model's classes: the columns of :meth:`predict_proba`."""
        return self.runner.classes

    @property
    def backend(self) -> str:
        """What runs the model: "native" (its own library: PyTorch, scikit-learn), "onnxruntime fp32|int8", ..."""
        return self.runner.name

    def clean(self, texts: list[str]) -> list[str]:
        """The texts as the model saw its training data: cleaned, and none of them empty."""
        if not texts:
            raise UserError("No texts to classify.")
        cleaned = clean_texts(texts, self.config.data.clean)
        check_texts(cleaned, "input")
        return cleaned

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return self.runner.predict_proba(self.clean(texts), batch_size=batch_size)

    def classify(self, texts: list[str], batch_size: int = 128) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, share of each text's tokens the model knows) of the texts, cleaned once; the
        share is None when the model cannot tell (``SentimentModel.known_token_share``)."""
        cleaned = self.clean(texts)
        return self.runner.predict_proba(cleaned, batch_size=batch_size), self.runner.known_token_share(cleaned)


def unknown_texts_warning(shares: np.ndarray | None) -> str | None:
    """The warning for texts in which the model knows no token, or None when there are none."""
    if shares is None:
        return None
    blind = int((np.asarray(shares) == 0).sum())
    if not blind:
        return None
    return f"{blind} text(s) contain no word the model knows; their predictions are the model's prior."


def read_prediction_inputs(
    texts: list[str] | None, file: Path | None, text_column: str | None, id_column: str | None, encoding: str
) -> tuple[list[str], list[str]]:
    """Texts from arguments, a file, or stdin, with their ids."""
    if texts:
        return [str(i) for i in range(len(texts))], list(texts)
    if file is not None:
        if not file.is_file():
            raise UserError(f"--file {file} does not exist.")
        found, ids = read_texts_table(file, text_column, encoding, id_column)
        return ids, found
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("No texts given: pass them as arguments, with --file, or on stdin.")
    lines = [line.rstrip("\r") for line in sys.stdin.read().split("\n") if line.strip()]
    if not lines:
        raise UserError("stdin held no texts (one text per line expected).")
    return [str(i) for i in range(len(lines))], lines


def check_kaggle_submission(classes: LabelSpace, kaggle_submission: Path | None) -> None:
    """Kaggle's submission is a 0/1 sentiment per review: refused for a model of any other classes."""
    if kaggle_submission is not None and not classes.is_sentiment:
        shown = ", ".join(clip(name, 20) for name in classes.names[:8]) + (" ..." if classes.size > 8 else "")
        raise UserError(
            f"--kaggle-submission writes a 0/1 sentiment per review; this run's classes are {shown}. "
            "Use --output for its predictions."
        )


def write_prediction_outputs(
    ids: list[str],
    probabilities: np.ndarray,
    output: Path | None,
    kaggle_submission: Path | None,
    known_share: np.ndarray | None = None,
    classes: LabelSpace | None = None,
) -> None:
    """``output``: id, the probability columns (evaluation/predictions.py: prob_positive for sentiment,
    else prob_<class> for each class), prediction and, when the model can tell, known_token_share (empty
    otherwise); ``kaggle_submission``: Kaggle's fixed id,sentiment format (sentiment only)."""
    from imdb_sentiment.data.labels import SENTIMENT
    from imdb_sentiment.evaluation.predictions import predictions_frame
    from imdb_sentiment.io_utils import atomic_path

    classes = classes or SENTIMENT
    check_kaggle_submission(classes, kaggle_submission)
    if output:
        frame = predictions_frame(ids, None, probabilities, classes)
        frame["known_token_share"] = known_share if known_share is not None else np.nan
        with atomic_path(output) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    if kaggle_submission:
        import pandas as pd

        predictions = probabilities.argmax(axis=1)
        # Kaggle's format: id (with quotes, as in testData.tsv) and a 0/1 sentiment.
        frame = pd.DataFrame({"id": [f'"{i}"' for i in ids], "sentiment": predictions})
        with atomic_path(kaggle_submission) as tmp:
            frame.to_csv(tmp, index=False, quoting=3)


def evaluate_run(
    run_dir: Path,
    data: str | None = None,
    format: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    limit: int | None = None,
    batch_size: int = 128,
    onnx: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run on a dataset's test split (or, for a plain labelled table, all of it); ``onnx``:
    with its ONNX export (onnxruntime) instead of the saved model."""
    predictor = Predictor.from_run(run_dir, onnx=onnx)
    note = None
    evaluations = RunFolder(run_dir).output_folder("evaluations")  # before the work: a link out is refused
    if data is None:
        # The run's own test split, rebuilt exactly as in training (same seed, same carving).
        from imdb_sentiment.data.splits import load_data

        prepared = load_data(predictor.config.data)
        source, fmt, dataset, split = Path(prepared.raw.source), prepared.raw.format, prepared.test, "test"
    else:
        updates = {"path": data, "format": format or "auto", "text_column": text_column,
                   "label_column": label_column, "encoding": encoding, "test_path": None}  # fmt: skip
        spec = build_data_config(
            predictor.config.data.model_dump()
            | {k: v for k, v in updates.items() if v is not None or k in ("encoding", "test_path")}
        )
        source = resolve_data_path(spec.path)
        classes = predictor.classes
        if (
            not classes.is_sentiment
            and (spec.format if spec.format != "auto" else detect_format(source)) == "table"
        ):
            # A table is read in the model's classes (its cells name some or all of them), whatever the
            # run's own data was (an IMDB layout's data.target: rating included).
            spec = build_data_config(
                spec.model_dump()
                | {"labels": list(classes.names), "ordinal": classes.ordered, "target": "sentiment"}
            )
        splits = read_dataset(source, spec)
        # Its test split; the run's own held-out split of its own training data; never reviews it trained on.
        dataset, split, note = evaluation_split(splits, spec, run_dir / "data.json")
        dataset = in_classes(dataset, classes, str(source))
        fmt = splits.format
    assert dataset is not None
    if limit:
        dataset = stratified_sample(dataset, limit, predictor.config.data.seed)
    metrics, _ = evaluate_model(predictor.runner, dataset.texts, dataset.labels, batch_size)
    metrics.update({"dataset": str(source), "format": fmt, "split": split,
                    "content_sha256": dataset.content_digest(), "backend": predictor.backend})  # fmt: skip
    if note:
        metrics["note"] = note
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output = evaluations / f"{Path(str(source)).name}-{stamp}.json"
    write_json_atomic(output, metrics)
    return metrics, output


def in_classes(dataset: TextDataset, classes: LabelSpace, where: str) -> TextDataset:
    """``dataset`` with its labels as indices of the model's ``classes``, matched by name (reviews labelled
    negative / positive scored by a negative / neutral / positive model); a label that is none of the
    model's classes is one line."""
    if dataset.classes.names == classes.names:
        return dataset
    names = dataset.classes.names
    unknown = [names[index] for index in np.unique(dataset.labels) if names[index] not in classes.names]
    if unknown:
        known = ", ".join(clip(name, 20) for name in classes.names[:8]) + (" ..." if classes.size > 8 else "")
        raise UserError(
            f"{where}: label(s) {', '.join(repr(clip(name)) for name in unknown[:5])} are not classes of this run's "
            f"model ({known}); evaluate it on data labelled with its classes."
        )
    mapping = np.asarray([classes.names.index(name) if name in classes.names else -1 for name in names])
    return TextDataset(dataset.texts, mapping[dataset.labels], dataset.ids, classes)
