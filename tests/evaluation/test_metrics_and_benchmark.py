from __future__ import annotations

import numpy as np
import pytest

from imdb_sentiment.evaluation.metrics import classification_metrics
from imdb_sentiment.pipelines.benchmark import Leaderboard


def test_metrics_by_hand() -> None:
    labels = np.array([1, 1, 0, 0])
    probabilities = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]])
    metrics = classification_metrics(labels, probabilities)
    assert metrics["accuracy"] == 0.5
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert metrics["confusion_matrix"] == [[1, 1], [1, 1]]
    assert metrics["roc_auc"] == pytest.approx(0.75)


def test_leaderboard_ranks_by_accuracy() -> None:
    board = Leaderboard([{"model": "a", "accuracy": 0.8}, {"model": "b", "accuracy": 0.9}])
    table = board.to_markdown_table()
    assert table.index("| 1 | b |") < table.index("| 2 | a |")
