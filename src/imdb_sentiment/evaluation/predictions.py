"""The predictions table (a run's predictions.csv, ``predict``'s output): one row per review with its
probability columns, the one place that knows their names.

Sentiment keeps its columns (``prob_positive``; labels and predictions as 0 / 1). Any other task writes
``prob_<class>`` for every class and the labels and predictions as class names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError


def probability_frame(probabilities: np.ndarray, classes: LabelSpace) -> pd.DataFrame:
    """The probability columns of ``probabilities`` (n, K)."""
    if classes.is_sentiment:
        return pd.DataFrame({"prob_positive": probabilities[:, 1]})
    return pd.DataFrame(probabilities, columns=classes.probability_columns())


def class_column(indices: np.ndarray, classes: LabelSpace) -> list[object]:
    """Labels or predictions as written: 0 / 1 for sentiment, else class names."""
    indices = np.asarray(indices)
    return indices.tolist() if classes.is_sentiment else [classes.names[i] for i in indices]


def predictions_frame(
    ids: list[str], labels: np.ndarray | None, probabilities: np.ndarray, classes: LabelSpace
) -> pd.DataFrame:
    """id, label (when known), the probability columns, prediction."""
    frame = pd.DataFrame({"id": ids})
    if labels is not None:
        frame["label"] = class_column(labels, classes)
    frame = pd.concat([frame, probability_frame(probabilities, classes)], axis=1)
    frame["prediction"] = class_column(probabilities.argmax(axis=1), classes)
    return frame


def read_probabilities(frame: pd.DataFrame, classes: LabelSpace, where: Path | str) -> np.ndarray:
    """The (n, K) probabilities of a predictions table; missing or non-probability cells: one line."""
    columns = classes.probability_columns()
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise UserError(f"{where} lacks the column(s) {', '.join(missing[:4])}; was it edited?")
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.all((values >= 0) & (values <= 1)):  # NaN (an unreadable cell) fails too
        raise UserError(
            f"{where}: {', '.join(columns[:4])} hold values that are not probabilities; was it edited?"
        )
    if classes.is_sentiment:
        return np.column_stack([1.0 - values[:, 0], values[:, 0]])
    return values


def read_class_column(frame: pd.DataFrame, column: str, classes: LabelSpace, where: Path | str) -> np.ndarray:
    """Class indices of a label / prediction column written by :func:`class_column`."""
    if column not in frame.columns:
        raise UserError(f"{where} lacks the column {column!r}; was it edited?")
    cells = frame[column].tolist()
    return classes.encode(cells, str(where), column)
