"""Descriptive statistics of a text dataset (``imdb-sentiment data stats``).

Two tokenisations, chosen to be simple and reproducible rather than linguistically exact:

* **Words per review** (lengths, the 256/512 shares): whitespace-separated tokens, ``text.split()``.
  This is what "a review has N words" usually means and it is cheap; punctuation stays attached.
* **Vocabulary size**: distinct lower-cased word types matched by :data:`WORD_PATTERN` -- runs of
  letters/digits, with inner apostrophes kept (``don't``, ``director's``), underscores and all
  other punctuation dropped. ``Great``, ``great`` and ``great!`` are one type.

Statistics describe the texts as given: run them on cleaned data (the loaders clean by default) so
that ``<br />`` tags do not count as words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from rich.table import Table

from imdb_sentiment.data.dataset import UNLABELED, TextDataset
from imdb_sentiment.data.labels import LabelSpace

WORD_PATTERN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
LONG_REVIEW_THRESHOLDS = (256, 512)
_SUMMARY_KEYS = ("mean", "median", "p90", "p95", "p99", "min", "max")


def vocabulary(texts: list[str]) -> set[str]:
    """Lower-cased word types of ``texts`` (see the module docstring for the tokenisation)."""
    types: set[str] = set()
    for text in texts:
        types.update(WORD_PATTERN.findall(text.lower()))
    return types


def _summary(values: np.ndarray) -> dict[str, float | int | None]:
    if values.size == 0:
        return dict.fromkeys(_SUMMARY_KEYS)
    p90, p95, p99 = np.percentile(values, [90, 95, 99])
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "min": int(values.min()),
        "max": int(values.max()),
    }


class _Measures:
    """Per-review lengths, label counts and word types: everything the statistics derive from.

    Kept apart so that a total over several splits merges these instead of re-tokenising. ``classes``:
    what the label indices name (every split of a dataset shares its training split's).
    """

    def __init__(
        self, words: np.ndarray, chars: np.ndarray, labels: np.ndarray, types: set[str], classes: LabelSpace
    ) -> None:
        self.words, self.chars, self.labels, self.types, self.classes = words, chars, labels, types, classes

    @classmethod
    def of(cls, dataset: TextDataset, classes: LabelSpace | None = None) -> _Measures:
        count = len(dataset)
        words = np.fromiter((len(text.split()) for text in dataset.texts), dtype=np.int64, count=count)
        chars = np.fromiter((len(text) for text in dataset.texts), dtype=np.int64, count=count)
        labels = np.asarray(dataset.labels, dtype=np.int64)
        return cls(words, chars, labels, vocabulary(dataset.texts), classes or dataset.classes)

    @classmethod
    def merge(cls, parts: list[_Measures]) -> _Measures:
        return cls(
            np.concatenate([part.words for part in parts]),
            np.concatenate([part.chars for part in parts]),
            np.concatenate([part.labels for part in parts]),
            set().union(*(part.types for part in parts)),
            parts[0].classes,
        )

    def stats(self) -> dict[str, Any]:
        counts = {name: int((self.labels == value).sum()) for value, name in enumerate(self.classes.names)}
        labelled = sum(counts.values())
        labels = {**counts, "unlabeled": int((self.labels == UNLABELED).sum())}
        result: dict[str, Any] = {"count": int(self.words.size), "labels": labels}
        if self.classes.is_sentiment:
            result["positive_share"] = counts["positive"] / labelled if labelled else None
        else:
            result["class_shares"] = {
                name: count / labelled if labelled else None for name, count in counts.items()
            }
        result.update({
            "words_per_review": _summary(self.words),
            "chars_per_review": _summary(self.chars),
            "vocabulary_size": len(self.types),
        })  # fmt: skip
        for threshold in LONG_REVIEW_THRESHOLDS:
            share = float((self.words > threshold).mean()) if self.words.size else None
            result[f"share_over_{threshold}_words"] = share
        return result


def dataset_stats(dataset: TextDataset) -> dict[str, Any]:
    """Count, label balance, length distributions, vocabulary size and long-review shares.

    Keys: ``count``; ``labels`` (the count of each class, in class order, then ``unlabeled``); for
    sentiment ``positive_share``, for any other task ``class_shares`` ({class: share}), both of the
    labelled reviews; ``words_per_review`` and ``chars_per_review`` (mean, median, p90, p95, p99,
    min, max); ``vocabulary_size``; ``share_over_256_words`` and ``share_over_512_words``. Plain
    JSON-serialisable values; summaries and shares are ``None`` for an empty dataset.
    """
    return _Measures.of(dataset).stats()


def stats_by_split(parts: Mapping[str, TextDataset], total: str | None = "all") -> dict[str, dict[str, Any]]:
    """:func:`dataset_stats` per part, plus (with ``total`` and 2+ parts) all parts together.

    Every part is counted in the classes of the first labelled one (the training split's: unlabelled
    reviews carry no classes of their own). The total is computed on the union, not averaged, so its
    vocabulary and percentiles are exact.
    """
    labelled = [part for part in parts.values() if (part.labels != UNLABELED).any()]
    classes = labelled[0].classes if labelled else None
    measures = {name: _Measures.of(part, classes) for name, part in parts.items()}
    result = {name: measure.stats() for name, measure in measures.items()}
    if total and len(measures) > 1:
        result[total] = _Measures.merge(list(measures.values())).stats()
    return result


# --------------------------------------------------------------------------------------------------
# Rendering


def _fmt(value: Any, kind: str = "number") -> str:
    if value is None:
        return "-"
    if kind == "share":
        return f"{100 * value:.1f}%"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return f"{value:,.1f}"


def _rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    labels = stats["labels"]
    if "positive_share" in stats:  # sentiment, as ever
        rows = [
            ("reviews", _fmt(stats["count"])),
            ("positive", _fmt(labels["positive"])),
            ("negative", _fmt(labels["negative"])),
            ("unlabeled", _fmt(labels["unlabeled"])),
            ("positive share (labelled)", _fmt(stats["positive_share"], "share")),
        ]
    else:  # one row per class: its count and its share of the labelled reviews
        rows = [("reviews", _fmt(stats["count"]))]
        rows += [(f"class {name}", f"{_fmt(labels[name])} ({_fmt(share, 'share')})")
                 for name, share in stats["class_shares"].items()]  # fmt: skip
        rows.append(("unlabeled", _fmt(labels["unlabeled"])))
    for key, title in (("words_per_review", "words"), ("chars_per_review", "chars")):
        rows += [(f"{title}: {name}", _fmt(value)) for name, value in stats[key].items()]
    rows.append(("vocabulary (lower-cased types)", _fmt(stats["vocabulary_size"])))
    rows += [
        (f"longer than {threshold} words", _fmt(stats[f"share_over_{threshold}_words"], "share"))
        for threshold in LONG_REVIEW_THRESHOLDS
    ]
    return rows


def render_stats(
    stats_by_split: Mapping[str, Mapping[str, Any]], title: str | None = "Dataset statistics"
) -> Table:
    """A rich Table: one row per statistic, one column per split."""
    table = Table(title=title)
    table.add_column("statistic")
    for name in stats_by_split:
        table.add_column(name, justify="right")
    per_split = [_rows(stats) for stats in stats_by_split.values()]
    for index, (label, _value) in enumerate(per_split[0] if per_split else []):
        table.add_row(label, *(rows[index][1] for rows in per_split))
    return table
