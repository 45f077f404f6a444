"""NBSVM's naive-Bayes pieces as scikit-learn estimators (Wang & Manning, 2012). scikit-learn has no
NB log-count-ratio transformer, so it is written here; the one-vs-rest fitting for K > 2 classes is
scikit-learn's OneVsRestClassifier."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline


class NBRatioScaler(TransformerMixin, BaseEstimator):
    """Scale features by the naive-Bayes log-count ratio r = log((p/|p|) / (q/|q|))."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, features: sparse.csr_matrix, labels: np.ndarray) -> NBRatioScaler:
        labels = np.asarray(labels)
        positive = np.asarray(features[labels == 1].sum(axis=0)).ravel() + self.alpha
        negative = np.asarray(features[labels == 0].sum(axis=0)).ravel() + self.alpha
        self.ratio_ = np.log((positive / positive.sum()) / (negative / negative.sum())).astype(np.float32)
        return self

    def transform(self, features: sparse.csr_matrix) -> sparse.csr_matrix:
        return sparse.csr_matrix(features.multiply(self.ratio_))


class NBOneVsRest(ClassifierMixin, BaseEstimator):
    """NBSVM for K > 2 classes: for each class k a ratio r_k (class k against the rest) and a binary
    ``estimator`` on the features scaled by it, fitted by scikit-learn's OneVsRestClassifier.

    Class k's decision w_k . (x * r_k) + b_k equals (w_k * r_k) . x + b_k, so the fitted classifiers
    collapse into one linear map over the unscaled features: ``coef_`` (K, n) = ``weights_ * ratios_``.
    Explanations read it like any linear classifier's coefficients.

    Probabilities are the normalised sigmoids of the K decisions (what OneVsRestClassifier does): each
    binary classifier estimates P(class k | x) itself, so when the K estimates already sum to one they are
    returned unchanged; a softmax of the decisions would normalise odds, not probabilities, and sharpen
    every confident prediction. Computed in log space so that K very negative decisions cannot underflow
    to a 0 / 0 row."""

    def __init__(self, estimator: LogisticRegression, alpha: float = 1.0) -> None:
        self.estimator = estimator
        self.alpha = alpha

    @property
    def C(self) -> float:
        return self.estimator.C

    def fit(self, features: sparse.csr_matrix, labels: np.ndarray) -> NBOneVsRest:
        per_class = Pipeline([("nb_ratio", NBRatioScaler(self.alpha)), ("classifier", self.estimator)])
        fitted = OneVsRestClassifier(per_class).fit(features, labels).estimators_
        return self.set_weights(
            ratios=np.stack([binary.named_steps["nb_ratio"].ratio_ for binary in fitted]),
            weights=np.concatenate([binary.named_steps["classifier"].coef_ for binary in fitted]),
            intercept=np.concatenate([binary.named_steps["classifier"].intercept_ for binary in fitted]),
        )

    def set_weights(self, ratios: np.ndarray, weights: np.ndarray, intercept: np.ndarray) -> NBOneVsRest:
        """Adopt fitted (or loaded) ratios (K, n), binary weights (K, n) and intercepts (K,)."""
        self.ratios_, self.weights_, self.intercept_ = ratios, weights, intercept
        self.coef_ = weights * ratios
        self.classes_ = np.arange(len(intercept))
        self.n_features_in_ = ratios.shape[1]
        return self

    def decision_function(self, features: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(features @ self.coef_.T) + self.intercept_

    def predict_proba(self, features: sparse.csr_matrix) -> np.ndarray:
        # log sigmoid(d) = -log(1 + exp(-d)); a softmax of those is the normalised sigmoids.
        return softmax(-np.logaddexp(0.0, -self.decision_function(features)), axis=1)

    def predict(self, features: sparse.csr_matrix) -> np.ndarray:
        return self.decision_function(features).argmax(axis=1)
