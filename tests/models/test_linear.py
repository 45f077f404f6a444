from __future__ import annotations

import numpy as np
from scipy import sparse

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.models.base import FitContext
from imdb_sentiment.models.linear import NBSVM, NBRatioScaler


def test_nb_ratio_matches_hand_computation() -> None:
    # Two features; feature 0 appears in both positives, feature 1 in the negative only.
    features = sparse.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32))
    labels = np.array([1, 1, 0])
    scaler = NBRatioScaler(alpha=1.0).fit(features, labels)
    p = np.array([2 + 1, 0 + 1]) / 4  # positive counts + alpha, normalised
    q = np.array([0 + 1, 1 + 1]) / 3
    np.testing.assert_allclose(scaler.ratio_, np.log(p / q), rtol=1e-6)
    np.testing.assert_allclose(scaler.transform(features).toarray()[2], [0, np.log(p[1] / q[1])], rtol=1e-6)


def _dataset(texts: list[str], labels: list[int]) -> TextDataset:
    return TextDataset(texts, np.array(labels))


def test_c_grid_chooses_on_validation_and_records_history() -> None:
    train = _dataset(["good fun", "great fun", "bad dull", "awful dull"] * 5, [1, 1, 0, 0] * 5)
    valid = _dataset(["good great", "bad awful"], [1, 0])
    model = NBSVM({"min_df": 1, "max_features": None, "C_grid": [0.01, 1.0]})
    context = FitContext(training=TrainingConfig())
    model.fit(train, valid, context)
    assert [row["C"] for row in context.history] == [0.01, 1.0]
    assert context.extra_metrics["chosen_C"] in (0.01, 1.0)
    assert model.predict(["good fun", "awful dull"]).tolist() == [1, 0]
