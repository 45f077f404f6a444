"""Biases on label-word scores and how well a prompt's scores separate the classes once calibrated.

Two classes: a bias on the margin ``score(positive word) - score(negative word)`` (content-free: the
log-odds of the mean content-free probability, Zhao et al. 2021; train: the accuracy-best threshold;
prior: the threshold that labels the class shares' worth of reviews positive, e.g. the median margin on
balanced data, :func:`prior_biases`). K classes: one bias per class on the K scores (content-free: the
log of the mean content-free distribution; train: the likelihood-best intercepts, :func:`fit_intercepts`;
prior: the biases whose mean prediction matches the class shares). The prior calibration reads the
reviews' scores and the class shares, never which review has which label: a zero-label calibration.
llm-score's fit and the template search (:mod:`.search`) both use these, so the search rates a prompt
as predictions would use it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax, logsumexp, softmax


def margins_of(scores: np.ndarray) -> np.ndarray:
    """Two classes: the label margin of each row of label-word scores."""
    return (scores[:, 1] - scores[:, 0]).astype(np.float64)


def fitted_biases(
    content_free: np.ndarray, scores: np.ndarray, labels: np.ndarray, num_classes: int, shares: np.ndarray
) -> dict[str, float | list[float]]:
    """Every calibration's bias from the scores of the content-free inputs and of training reviews
    (``labels``: theirs; ``shares``: each class's share of the training split)."""
    if num_classes == 2:
        mean = float(np.clip(expit(margins_of(content_free)).mean(), 1e-6, 1 - 1e-6))
        return {"none": 0.0, "content-free": float(np.log(mean / (1 - mean))),
                "train": best_threshold(margins_of(scores), labels), "prior": prior_biases(scores, shares)}  # fmt: skip
    prior = softmax(content_free.astype(np.float64), axis=1).mean(axis=0)  # of inputs that say nothing
    return {
        "none": [0.0] * num_classes,
        "content-free": np.log(np.clip(prior, 1e-6, None)).tolist(),
        "train": fit_intercepts(scores.astype(np.float64), labels, num_classes),
        "prior": prior_biases(scores, shares),
    }


def prior_biases(scores: np.ndarray, shares: np.ndarray, iterations: int = 500) -> float | list[float]:
    """Biases from unlabelled reviews' scores and the class shares alone. Two classes: the margin at the
    negative share's quantile, so that the positive share of the reviews is predicted positive (Zhao et
    al. 2021 and Holtzman et al. 2021 show small LMs' label prior, not their ranking, is what is off).
    K classes: the biases under which the mean predicted distribution equals the shares, found by the
    fixed-point update ``b += log(mean prediction / share)`` (Saerens et al. 2002's prior adjustment
    without labels); ``b[0] = 0``."""
    shares = np.clip(np.asarray(shares, dtype=np.float64), 1e-6, None)
    shares = shares / shares.sum()
    if scores.shape[1] == 2:
        return float(np.quantile(margins_of(scores), shares[0]))
    biases = np.zeros(scores.shape[1])
    for _ in range(iterations):
        mean = softmax(scores.astype(np.float64) - biases, axis=1).mean(axis=0)
        step = np.log(np.clip(mean, 1e-12, None) / shares)
        biases = biases + step
        if np.abs(step).max() < 1e-9:
            break
    return (biases - biases[0]).tolist()


def prompt_quality(scores: np.ndarray, labels: np.ndarray, bias: float | list[float]) -> dict[str, float]:
    """Two classes: ROC-AUC of the margin (a bias moves no review past another: any calibration ranks
    alike) and the accuracy at ``bias``. K classes: the mean over classes of the log-probability of the
    right class after ``bias`` (a class-balanced score that, unlike accuracy, sees how sure each answer
    is) and the accuracy."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if scores.shape[1] == 2:
        margins = margins_of(scores)
        return {"roc_auc": float(roc_auc_score(labels, margins)),
                "accuracy": float(((margins > bias).astype(int) == labels).mean())}  # fmt: skip
    log_probabilities = log_softmax(scores.astype(np.float64) - np.asarray(bias), axis=1)
    right = log_probabilities[np.arange(len(labels)), labels]
    per_class = [right[labels == label].mean() for label in np.unique(labels)]
    return {"log_likelihood": float(np.mean(per_class)),
            "accuracy": float((log_probabilities.argmax(axis=1) == labels).mean())}  # fmt: skip


def best_threshold(margins: np.ndarray, labels: np.ndarray) -> float:
    """The threshold on the margin with the best accuracy on (margins, labels): midpoints between
    sorted margins; ties go to the middle of the best run."""
    order = np.sort(margins)
    candidates = np.concatenate([[order[0] - 1.0], (order[1:] + order[:-1]) / 2, [order[-1] + 1.0]])
    accuracy = np.array([((margins > c).astype(int) == labels).mean() for c in candidates])
    best = np.flatnonzero(accuracy == accuracy.max())
    return float(candidates[best[len(best) // 2]])


def fit_intercepts(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Per-class biases ``b`` (``b[0] = 0``) maximising the likelihood of ``labels`` under
    ``softmax(scores - b)``. Why not the accuracy-best biases as for two classes: over K - 1 thresholds
    accuracy is a non-convex staircase; the likelihood is convex in ``b`` with one optimum, where the mean
    prediction matches the class shares (a balanced sample: the label prior removed)."""
    from scipy.optimize import minimize

    targets = np.eye(num_classes)[labels]

    def loss(free: np.ndarray) -> tuple[float, np.ndarray]:
        shift = np.concatenate([[0.0], free])
        shifted = scores - shift
        probabilities = softmax(shifted, axis=1)
        value = float(np.mean(logsumexp(shifted, axis=1) - (shifted * targets).sum(axis=1)))
        gradient = (targets - probabilities).mean(axis=0)[1:]
        return value, gradient

    result = minimize(loss, np.zeros(num_classes - 1), jac=True, method="L-BFGS-B")
    return [0.0, *(float(value) for value in result.x)]
