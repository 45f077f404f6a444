"""Error analysis of one model's test predictions: where it fails, not just how often.

Pure functions of (texts, labels, probabilities, classes): they work for every model kind because they
never touch the model, and for any number of classes (labels are class indices, probabilities (n, K)).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.data.labels import SENTIMENT, LabelSpace
from imdb_sentiment.evaluation.metrics import expected_calibration_error, ordinal_metrics, reliability_bins

# Words that flip or qualify sentiment: bag-of-words models read "not good" as "good" plus noise, and
# "good acting, but a dull plot" as mixed; these slices show whether a model handles them.
CUE_WORDS: dict[str, tuple[str, ...]] = {
    "negation": ("not", "no", "never", "n't", "nothing", "nobody", "none", "neither", "nor", "hardly",
                 "cannot", "without"),
    "contrast": ("but", "however", "although", "though", "yet", "whereas", "nevertheless", "despite",
                 "still", "instead"),
}  # fmt: skip


def _cue_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    plain = [re.escape(word) for word in words if word != "n't"]
    # "n't" is glued to its verb ("didn't"), so it is matched as a suffix, the others as whole words.
    return re.compile(r"\b(?:" + "|".join(plain) + r")\b" + ("|n't\\b" if "n't" in words else ""), re.IGNORECASE)


CUE_PATTERNS = {name: _cue_pattern(words) for name, words in CUE_WORDS.items()}


def confident_mistakes(
    texts: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    count: int = 10,
    classes: LabelSpace = SENTIMENT,
) -> list[dict[str, Any]]:
    """The wrong predictions the model was surest of, most confident first. Two classes keep their
    keys (label 0 / 1, prob_positive); any other task names the true and the predicted class, with the
    predicted one's probability (confidence) and the true one's."""
    predictions = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    if classes.is_sentiment:
        return [{"index": int(i), "text": texts[i], "label": int(labels[i]), "prob_positive": float(probabilities[i, 1]),
                 "confidence": float(confidence[i])} for i in order]  # fmt: skip
    return [{"index": int(i), "text": texts[i], "label": classes.name_of(labels[i]),
             "predicted": classes.name_of(predictions[i]), "confidence": float(confidence[i]),
             "prob_true": float(probabilities[i, labels[i]])} for i in order]  # fmt: skip


def accuracy_by_length(
    texts: list[str], labels: np.ndarray, predictions: np.ndarray, groups: int = 10
) -> list[dict[str, Any]]:
    """Accuracy per review-length decile (length in words); equal-count groups, so each bar is as
    trustworthy as the next."""
    lengths = pd.Series([len(text.split()) for text in texts])
    deciles = pd.qcut(lengths.rank(method="first"), q=min(groups, len(texts)), labels=False)
    correct = predictions == labels
    rows = []
    for decile in sorted(deciles.unique()):
        members = (deciles == decile).to_numpy()
        rows.append({"group": f"{int(lengths[members].min())}-{int(lengths[members].max())} words",
                     "min_words": int(lengths[members].min()), "max_words": int(lengths[members].max()),
                     "count": int(members.sum()), "accuracy": float(correct[members].mean())})  # fmt: skip
    return rows


def accuracy_by_cues(texts: list[str], labels: np.ndarray, predictions: np.ndarray) -> dict[str, dict[str, Any]]:
    """Accuracy on reviews that contain negation (or contrast) words against those that do not."""
    correct = predictions == labels
    result = {}
    for name, pattern in CUE_PATTERNS.items():
        has = np.array([bool(pattern.search(text)) for text in texts])
        result[name] = {
            "words": list(CUE_WORDS[name]),
            "with": {"count": int(has.sum()), "accuracy": float(correct[has].mean()) if has.any() else None},
            "without": {"count": int((~has).sum()),
                        "accuracy": float(correct[~has].mean()) if (~has).any() else None},
        }  # fmt: skip
    return result


def per_class_errors(matrix: np.ndarray, classes: LabelSpace) -> dict[str, dict[str, Any]]:
    """Per true class, from the confusion ``matrix`` (rows true, columns predicted): its reviews, the
    share predicted right (recall), the share of the predictions of the class that were right
    (precision), and the class it was most often mistaken for."""
    rows = {}
    for index, name in enumerate(classes.names):
        count, predicted = int(matrix[index].sum()), int(matrix[:, index].sum())
        wrong = matrix[index].copy()
        wrong[index] = 0
        rows[name] = {
            "count": count,
            "recall": float(matrix[index, index] / count) if count else None,
            "precision": float(matrix[index, index] / predicted) if predicted else None,
            "errors": int(wrong.sum()),
            "most_mistaken_for": classes.name_of(int(wrong.argmax())) if wrong.any() else None,
        }
    return rows


def error_analysis(
    texts: list[str], labels: np.ndarray, probabilities: np.ndarray, classes: LabelSpace = SENTIMENT
) -> dict[str, Any]:
    """Accuracy, confident mistakes, accuracy by length and by cue words, and the calibration of the
    top class. Any task but sentiment adds the classes, the K x K confusion matrix (rows true, columns predicted)
    and per-class errors; ordered classes their mean absolute error and share within one step."""
    labels = np.asarray(labels)
    predictions = probabilities.argmax(axis=1)
    analysis: dict[str, Any] = {
        "examples": len(texts),
        "accuracy": float((predictions == labels).mean()),
        "confident_mistakes": confident_mistakes(texts, labels, probabilities, classes=classes),
        "accuracy_by_length": accuracy_by_length(texts, labels, predictions),
        "accuracy_by_cues": accuracy_by_cues(texts, labels, predictions),
        "calibration": {
            "ece": expected_calibration_error(labels, probabilities),
            "bins": reliability_bins(labels, probabilities),
        },
    }
    if not classes.is_sentiment:
        analysis["classes"] = classes.to_json()
        from sklearn.metrics import confusion_matrix  # here: scikit-learn costs a refused command ~1 CPU s

        matrix = confusion_matrix(labels, predictions, labels=list(range(classes.size)))
        analysis["confusion_matrix"] = matrix.tolist()
        analysis["per_class"] = per_class_errors(matrix, classes)
    if classes.ordered:
        analysis["ordinal"] = ordinal_metrics(labels, predictions, classes)
    return analysis
