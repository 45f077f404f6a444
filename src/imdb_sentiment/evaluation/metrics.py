"""Classification metrics (scikit-learn) in the form metrics.json stores them."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


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
