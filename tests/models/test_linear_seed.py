"""The linear models' liblinear solver is seeded from the run's seed, not from numpy's global RNG."""

from __future__ import annotations

import numpy as np
from helpers import tiny_reviews

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.models.base import FitContext
from imdb_sentiment.models.linear import NBSVM, NBSVMParams


def test_the_same_seed_gives_the_same_weights_whatever_ran_before() -> None:
    train, valid = tiny_reviews(60, seed=1), tiny_reviews(10, seed=2)
    weights = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)  # what earlier work in the process left in numpy's global RNG
        model = NBSVM(NBSVMParams(min_df=1, max_features=None, refit_on_train_and_valid=False))
        model.fit(train, valid, FitContext(training=TrainingConfig(), seed=7))
        weights.append(model.pipeline_.named_steps["classifier"].coef_.copy())
    np.testing.assert_array_equal(weights[0], weights[1])
