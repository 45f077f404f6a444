"""Classification metrics (scikit-learn) in the form metrics.json stores them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

if TYPE_CHECKING:
    from imdb_sentiment.models.base import SentimentModel


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 of the positive class, ROC-AUC and the confusion matrix.

    ``probabilities`` is (n, 2); the prediction is its argmax. The confusion matrix is
    [[true neg, false pos], [false neg, true pos]].
    """
    labels = np.asarray(labels)
    predictions = probabilities.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, average="binary", pos_label=1, zero_division=0
    )
    both_classes = len(np.unique(labels)) == 2
    return {
        "examples": len(labels),
        "accuracy": float(accuracy_score(labels, predictions)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc_score(labels, probabilities[:, 1])) if both_classes else None,
        "confusion_matrix": confusion_matrix(labels, predictions, labels=[0, 1]).tolist(),
        "ece": expected_calibration_error(labels, probabilities),
    }


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Confidence of the predicted class in equal-width bins over [0.5, 1]: per bin the mean confidence,
    the accuracy and the count (a reliability diagram; Guo et al. 2017). Empty bins are left out."""
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.5, 1.0, bins + 1)
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


def evaluate_model(
    model: SentimentModel, texts: list[str], labels: np.ndarray, batch_size: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Predict ``texts``, score against ``labels`` and time the prediction; returns (metrics, probabilities)."""
    started = time.perf_counter()
    probabilities = model.predict_proba(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    metrics = classification_metrics(labels, probabilities)
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
