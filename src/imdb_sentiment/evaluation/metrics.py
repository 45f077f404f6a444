"""Classification metrics (scikit-learn) in the form metrics.json stores them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.data.labels import SENTIMENT, LabelSpace

if TYPE_CHECKING:
    from imdb_sentiment.models.base import SentimentModel


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, classes: LabelSpace = SENTIMENT
) -> dict[str, Any]:
    """The test metrics metrics.json stores; the prediction is the argmax of ``probabilities`` (n, K).

    Every task: accuracy, macro-F1, per-class precision / recall / F1 / support, the K x K confusion
    matrix (rows true, columns predicted, in class order), ROC-AUC (one-vs-rest macro for K > 2) and the
    ECE of the top class. Two classes keep their binary keys: precision / recall / F1 of class 1
    (positive), ROC-AUC of its probability. Ordered classes (ratings) add the mean absolute error (in the
    labels' units when they are numbers, stars for IMDB ratings; else in steps) and the share of
    predictions within one step of the truth.
    """
    # Imported here, not at the top: scikit-learn's import is a second of every CLI start that never scores.
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels)
    predictions = probabilities.argmax(axis=1)
    indices = list(range(classes.size))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0
    )
    metrics: dict[str, Any] = {
        "examples": len(labels),
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(np.mean(f1)),
    }
    if classes.size == 2:
        metrics.update({"precision": float(precision[1]), "recall": float(recall[1]), "f1": float(f1[1])})
    metrics["roc_auc"] = _roc_auc(labels, probabilities, classes.size)
    metrics["confusion_matrix"] = confusion_matrix(labels, predictions, labels=indices).tolist()
    metrics["ece"] = expected_calibration_error(labels, probabilities)
    if classes.size > 2:
        metrics["per_class"] = {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(classes.names, precision, recall, f1, support, strict=True)
        }
    if classes.ordered:
        metrics.update(ordinal_metrics(labels, predictions, classes))
    return metrics


def _roc_auc(labels: np.ndarray, probabilities: np.ndarray, size: int) -> float | None:
    """Binary: of P(class 1). K > 2: one-vs-rest, macro over the classes the test set has both sides of
    (scikit-learn's multi-class form refuses a test set missing a class). None when no class qualifies."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(labels)
    if size == 2:
        return float(roc_auc_score(labels, probabilities[:, 1])) if len(present) == 2 else None
    scores = [roc_auc_score(labels == index, probabilities[:, index]) for index in present]
    return float(np.mean(scores)) if len(present) >= 2 else None


def ordinal_metrics(labels: np.ndarray, predictions: np.ndarray, classes: LabelSpace) -> dict[str, Any]:
    """Mean absolute error of the predicted class (in the labels' units when they are numbers) and the
    share of predictions at most one step of the order away from the true class."""
    values = classes.values
    steps = np.abs(np.asarray(predictions) - np.asarray(labels))
    error = np.abs(values[predictions] - values[labels]) if values is not None else steps
    return {
        "mae": float(error.mean()) if len(error) else None,
        "mae_units": "label value" if values is not None else "steps",
        "within_one": float((steps <= 1).mean()) if len(steps) else None,
    }


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Confidence of the predicted class in equal-width bins over [1/K, 1] ([0.5, 1] for two classes): per
    bin the mean confidence, the accuracy and the count (a reliability diagram; Guo et al. 2017). Empty
    bins are left out."""
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(1.0 / max(probabilities.shape[1], 2), 1.0, bins + 1)
    # The top bin is closed on the right so a confidence of exactly 1.0 is counted.
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    rows = []
    for bin_ in range(bins):
        members = index == bin_
        if members.any():
            rows.append({"low": float(edges[bin_]), "high": float(edges[bin_ + 1]), "count": int(members.sum()),
                         "confidence": float(confidence[members].mean()),
                         "accuracy": float(correct[members].mean())})  # fmt: skip
    return rows


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """ECE: the count-weighted gap between confidence and accuracy over the reliability bins."""
    rows = reliability_bins(labels, probabilities, bins)
    total = sum(row["count"] for row in rows)
    return float(sum(row["count"] * abs(row["confidence"] - row["accuracy"]) for row in rows) / max(total, 1))


def accuracy_interval(accuracy: float, examples: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``examples`` reviews: how far a
    stratified test sample's accuracy may be from the full test set's (Wilson, not the normal
    approximation: it stays inside [0, 1] near 0 and 1)."""
    if examples <= 0:
        return (0.0, 1.0)
    centre = (accuracy + z * z / (2 * examples)) / (1 + z * z / examples)
    half = (
        z
        * np.sqrt(accuracy * (1 - accuracy) / examples + z * z / (4 * examples * examples))
        / (1 + z * z / examples)
    )
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def evaluate_model(
    model: SentimentModel, texts: list[str], labels: np.ndarray, batch_size: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Predict ``texts`` with a model or a serving backend, score against ``labels`` (class indices of
    ``model.classes``) and time the prediction; returns (metrics, probabilities)."""
    started = time.perf_counter()
    probabilities = model.predict_proba(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    metrics = classification_metrics(labels, probabilities, model.classes)
    metrics.update({"inference_seconds": seconds, "inference_reviews_per_second": len(texts) / max(seconds, 1e-9)})
    return metrics, probabilities


def single_review_latency(model: SentimentModel, texts: list[str], reviews: int = 32) -> dict[str, float]:
    """Predict up to ``reviews`` texts one call each, as a service answering one user at a time does;
    batched throughput alone hides the per-call cost (padding, Python overhead, thread start-up)."""
    sample = texts[:reviews]
    if not sample or model.capabilities.remote:
        # A remote model answers these test reviews from its response cache: that would time the cache,
        # not the server. Its requests/s over the test run is the honest rate.
        return {}
    model.predict_proba(sample[:1], batch_size=1)  # warm-up: first-call allocations are not latency
    latencies = []
    for text in sample:
        started = time.perf_counter()
        model.predict_proba([text], batch_size=1)
        latencies.append(time.perf_counter() - started)
    return {
        "single_review_ms_median": float(np.median(latencies) * 1000),
        "single_reviews_per_second": float(len(latencies) / sum(latencies)),
    }
