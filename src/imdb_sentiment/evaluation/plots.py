"""Run-folder plots: confusion matrix, ROC curve and training curves (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imdb_sentiment.io_utils import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)


def plot_confusion_matrix(matrix: list[list[int]], path: Path, title: str) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4, 3.6))
    values = np.asarray(matrix)
    axis.imshow(values, cmap="Blues")
    for (row, column), value in np.ndenumerate(values):
        axis.text(column, row, f"{value:,}", ha="center", va="center",
                  color="white" if value > values.max() / 2 else "black")  # fmt: skip
    axis.set_xticks([0, 1], ["negative", "positive"])
    axis.set_yticks([0, 1], ["negative", "positive"])
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    _save(figure, path)


def plot_roc_curve(labels: np.ndarray, scores: np.ndarray, path: Path, title: str) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(np.unique(labels)) < 2:
        return
    plt = _pyplot()
    false_positive, true_positive, _ = roc_curve(labels, scores)
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot(false_positive, true_positive, label=f"AUC {roc_auc_score(labels, scores):.4f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title)
    axis.legend(loc="lower right")
    _save(figure, path)


def plot_training_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    rows = [row for row in history if "epoch" in row]
    if not rows:
        return
    plt = _pyplot()
    epochs = [row["epoch"] for row in rows]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, axis in (("loss", loss_axis), ("accuracy", accuracy_axis)):
        for split in ("train", "valid"):
            values = [row.get(f"{split}_{key}") for row in rows]
            if all(value is not None for value in values):
                axis.plot(epochs, values, marker="o", label=split)
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.legend()
    figure.suptitle(title)
    _save(figure, path)
