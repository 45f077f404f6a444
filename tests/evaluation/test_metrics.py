from __future__ import annotations

import numpy as np
import pytest

from imdb_sentiment.evaluation.metrics import classification_metrics


def test_metrics_by_hand() -> None:
    labels = np.array([1, 1, 0, 0])
    probabilities = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]])
    metrics = classification_metrics(labels, probabilities)
    assert metrics["accuracy"] == 0.5
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert metrics["confusion_matrix"] == [[1, 1], [1, 1]]
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert 0 <= metrics["ece"] <= 1
