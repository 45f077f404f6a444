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
    }


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
