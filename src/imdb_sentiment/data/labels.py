"""The classes of a task: their names, their order, and turning a label column's cells into class indices.

A dataset's classes are the distinct labels of its training split (strings or integers), kept with their
names; ``data.labels`` fixes their order. Labels that are all spellings of sentiment (pos / neg /
positive / negative / 1 / 0 / true / false) are the binary sentiment task, exactly as before this
module existed: 0 negative, 1 positive. ``data.target: rating`` turns the IMDB layouts into the 8-class
star-rating task (1-4 and 7-10 stars: IMDB's labelled reviews have no 5 or 6).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imdb_sentiment.errors import UserError

# Cells spelling the binary sentiment labels (any case): what every binary layout has always accepted.
SENTIMENT_ALIASES = {
    "1": 1, "pos": 1, "positive": 1, "true": 1,
    "0": 0, "neg": 0, "negative": 0, "false": 0,
}  # fmt: skip
# More distinct labels than this in a training split is almost surely the wrong column (the text, an id).
MAX_CLASSES = 1000


@dataclass(frozen=True)
class LabelSpace:
    """The classes of a task, in index order. ``ordered``: the order means something (ratings), so the
    metrics add the mean absolute error and the share of predictions within one step."""

    names: tuple[str, ...]
    ordered: bool = False

    def __post_init__(self) -> None:
        if len(self.names) < 2 or len(set(self.names)) != len(self.names):
            raise ValueError(f"a label space needs two or more distinct names, got {self.names!r}")

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def is_sentiment(self) -> bool:
        """The binary sentiment task: every column, file and key keeps its binary name (prob_positive)."""
        return self.names == SENTIMENT.names

    @property
    def values(self) -> np.ndarray | None:
        """Each class's numeric value (stars) when every name is a number, else None: the mean absolute
        error of an ordered task is then in those units, otherwise in steps of the order."""
        try:
            numbers = np.array([float(name) for name in self.names])
        except ValueError:
            return None
        return numbers if np.isfinite(numbers).all() else None

    def probability_columns(self) -> list[str]:
        """The probability columns of predictions files: ``prob_positive`` for sentiment (its one column,
        as ever), else ``prob_<name>`` for each class in order."""
        return ["prob_positive"] if self.is_sentiment else [f"prob_{name}" for name in self.names]

    def name_of(self, index: int) -> str:
        return self.names[int(index)]

    def encode(self, values: Iterable[object], where: str, column: str) -> np.ndarray:
        """Class indices of a label column's cells; a cell naming no class is one line naming it."""
        cells = [normalise_cell(value) for value in values]
        if self.is_sentiment:
            mapped = [SENTIMENT_ALIASES.get(cell.lower(), -1) for cell in cells]
        else:
            index = {name: position for position, name in enumerate(self.names)}
            mapped = [index.get(cell, -1) for cell in cells]
        bad = [row for row, value in enumerate(mapped) if value < 0]
        if bad:
            unknown = sorted({cells[row] for row in bad})
            shown = ", ".join(repr(clip(value)) for value in unknown[:5])
            known = ", ".join(clip(name, 20) for name in self.names[:12]) + (" ..." if self.size > 12 else "")
            raise UserError(
                f"{where}: column {column!r} has label(s) {shown} ({len(bad)} row(s), first at row {bad[0] + 1}) "
                f"that the training data never uses (its classes: {known}). Fix or drop those rows."
            )
        return np.asarray(mapped, dtype=np.int64)

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "ordered": self.ordered}

    @classmethod
    def from_json(cls, data: object) -> LabelSpace:
        """A saved model's or run's classes; none recorded (a folder from before this existed): sentiment."""
        if data is None:
            return SENTIMENT
        if not isinstance(data, dict) or not isinstance(data.get("names"), list):
            raise ValueError("classes must be an object with a list of names")
        return cls(tuple(str(name) for name in data["names"]), bool(data.get("ordered", False)))


SENTIMENT = LabelSpace(("negative", "positive"))
RATINGS = LabelSpace(("1", "2", "3", "4", "7", "8", "9", "10"), ordered=True)


def normalise_cell(value: object) -> str:
    """A label cell as its class name: surrounding spaces dropped, and a whole number read back as a
    float from CSV ("3.0") written as the integer it is."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].lstrip("-").isdigit():
        return text[:-2]
    return text


def infer_label_space(
    values: Sequence[object], where: str, column: str, order: Sequence[str] | None = None, ordered: bool = False
) -> LabelSpace:
    """The classes of a training split's label cells: sentiment when every cell spells it (and no order is
    given), else the distinct values, in ``order`` when given, numerically when all are numbers, else
    alphabetically. More than :data:`MAX_CLASSES` distinct values or a single one: one line, refused."""
    cells = [normalise_cell(value) for value in values]
    distinct = sorted(set(cells))
    if order is None and not ordered and all(cell.lower() in SENTIMENT_ALIASES for cell in distinct):
        return SENTIMENT
    if len(distinct) > MAX_CLASSES:
        raise UserError(
            f"{where}: column {column!r} has {len(distinct):,} distinct labels (more than {MAX_CLASSES:,}); it is "
            "probably the text or an id column. Choose the label column with --label-column (data.label_column)."
        )
    if order is not None:
        names = tuple(normalise_cell(name) for name in order)
        unknown = [cell for cell in distinct if cell not in names]
        if unknown:
            shown = ", ".join(repr(clip(value)) for value in unknown[:5])
            raise UserError(f"{where}: column {column!r} has label(s) {shown} that data.labels does not list.")
    elif all(_is_number(cell) for cell in distinct):
        names = tuple(sorted(distinct, key=float))
    else:
        names = tuple(distinct)
    if len(names) < 2:
        shown = repr(clip(names[0])) if names else "none"
        raise UserError(f"{where}: column {column!r} holds one class only ({shown}); two or more are needed.")
    return LabelSpace(names, ordered=ordered)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def clip(text: str, size: int = 40) -> str:
    """A value shown in a message: at most ``size`` characters, so a message stays one short line."""
    return text if len(text) <= size else text[: size - 1] + "…"
