"""Figures (matplotlib, no display): a run's confusion matrix, ROC, training curves and reliability
diagram; the benchmark report's accuracy bars, accuracy-against-cost scatters and learning curves."""

from __future__ import annotations

from collections.abc import Sequence
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


def _log_x_when_spread(axis, values: list[float], label: str) -> None:
    """A log x axis when the values span more than a decade (training times, throughputs do), labelled
    at its major ticks only; a linear one otherwise, where a log axis would have no labelled tick or
    minor labels that run into each other."""
    from matplotlib.ticker import NullFormatter

    positive = [value for value in values if value > 0]
    if positive and max(positive) / min(positive) > 10:
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())
        label += " (log scale)"
    axis.set_xlabel(label)


def _accuracy_axis_top(axis) -> None:
    """No accuracy above 1 on an axis: margins and bands stop at the ceiling."""
    bottom, top = axis.get_ylim()
    axis.set_ylim(bottom, min(top, 1.005))


def plot_confusion_matrix(
    matrix: list[list[int]], path: Path, title: str, names: Sequence[str] = ("negative", "positive")
) -> None:
    """Rows: true class; columns: predicted (an extra last column: "invalid", a prompted model's
    unparseable answers)."""
    plt = _pyplot()
    values = np.asarray(matrix)
    size = 3.2 + 0.45 * len(names)
    figure, axis = plt.subplots(figsize=(size + 0.4, size))
    axis.imshow(values, cmap="Blues")
    font = 9 if len(names) <= 4 else 7
    for (row, column), value in np.ndenumerate(values):
        axis.text(column, row, f"{value:,}", ha="center", va="center", fontsize=font,
                  color="white" if value > values.max() / 2 else "black")  # fmt: skip
    axis.set_xticks(
        range(values.shape[1]), [*names, "invalid"][: values.shape[1]], rotation=45 if len(names) > 4 else 0
    )
    axis.set_yticks(range(len(names)), list(names))
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


def plot_reliability_diagram(bins: list[dict[str, float]], path: Path, title: str, num_classes: int = 2) -> None:
    """Accuracy against confidence per bin (bars) next to the diagonal of perfect calibration; the
    confidence of the predicted class runs from 1/K (0.5 for two classes) to 1."""
    if not bins:
        return
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4, 4))
    centres = [(row["low"] + row["high"]) / 2 for row in bins]
    width = bins[0]["high"] - bins[0]["low"]
    axis.bar(centres, [row["accuracy"] for row in bins], width=width * 0.9, color="#4c72b0", label="accuracy")
    low = 1.0 / max(num_classes, 2)
    axis.plot([low, 1], [low, 1], linestyle="--", color="grey", label="perfect calibration")
    axis.plot(centres, [row["confidence"] for row in bins], marker="o", color="#dd8452", label="confidence")
    axis.set_xlim(low, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("confidence of the predicted class")
    axis.set_ylabel("accuracy")
    axis.set_title(title)
    axis.legend(loc="upper left", fontsize=8)
    _save(figure, path)


def present_number(value: object) -> bool:
    return isinstance(value, int | float) and bool(np.isfinite(value))


def _std(row: dict) -> float:
    """A row's accuracy std over seeds; 0 where none was measured (one seed: None or NaN)."""
    std = row.get("accuracy_std")
    return float(std) if present_number(std) else 0.0


def plot_accuracy_bars(rows: list[dict], path: Path) -> None:
    """Mean accuracy per model (error bars: std over seeds, where measured; a black line: the 95% interval
    of a row scored on a test sample) beside the write-up's
    claimed accuracy and its published Kaggle submission's accuracy on the official labels. The axis
    starts at 0, as a bar's length must (a cut axis makes a 2-point gap look like a 2x one); the value
    is written on each bar so that close rows can still be told apart."""
    if not rows:
        return
    plt = _pyplot()
    rows = sorted(rows, key=lambda row: row["accuracy_mean"])
    figure, axis = plt.subplots(figsize=(7, 0.38 * len(rows) + 1.4))
    positions = np.arange(len(rows))
    spread = any(present_number(row.get("accuracy_std")) for row in rows)  # measured, even if 0
    axis.barh(positions, [row["accuracy_mean"] for row in rows], color="#4c72b0",
              xerr=[_std(row) for row in rows] if spread else None, capsize=3,
              label="ours (mean ± std over seeds)" if spread else "ours (one seed)")  # fmt: skip
    for position, row in zip(positions, rows, strict=True):
        axis.text(0.01, position, f"{100 * row['accuracy_mean']:.2f}%", va="center", color="white", fontsize=8)
    sampled = [(row["accuracy_ci95_low_mean"], row["accuracy_ci95_high_mean"], position)
               for position, row in zip(positions, rows, strict=True)
               if present_number(row.get("accuracy_ci95_low_mean")) and present_number(row.get("accuracy_ci95_high_mean"))]  # fmt: skip
    if sampled:  # rows scored on a stratified test sample: its 95% interval, drawn as a line through the bar
        for index, (low, high, position) in enumerate(sampled):
            axis.plot([low, high], [position, position], color="black", linewidth=2.5, zorder=4,
                      label="95% interval (test sample)" if index == 0 else None)  # fmt: skip
    for key, marker, colour, label in (("writeup_claimed", "D", "#dd8452", "write-up's claim"),
                                       ("writeup_kaggle", "x", "#c44e52", "write-up's Kaggle file")):  # fmt: skip
        points = [(row[key], index) for index, row in enumerate(rows) if row.get(key) is not None]
        if points:
            axis.scatter(*zip(*points, strict=True), marker=marker, color=colour, zorder=3, label=label)
    axis.set_yticks(positions, [row["label"] for row in rows])
    axis.set_xlim(0.0, 1.0)
    axis.set_xlabel("test accuracy")
    axis.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3, fontsize=8, frameon=False)
    _save(figure, path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower is better) and accuracy."""
    order = sorted(range(len(points)), key=lambda index: (points[index][0], -points[index][1]))
    front, best = [], -np.inf
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def plot_accuracy_against(rows: list[dict], key: str, axis_label: str, path: Path, lower_is_better: bool) -> None:
    """Accuracy against a cost (training time) or a speed (throughput), log x axis; the Pareto front
    joined by a line."""
    rows = [row for row in rows if row.get(key) and row.get("accuracy_mean") is not None]
    if not rows:
        return
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    xs = [row[key] for row in rows]
    ys = [row["accuracy_mean"] for row in rows]
    axis.scatter(xs, ys, color="#4c72b0", zorder=3)
    for x, y, row in zip(xs, ys, rows, strict=True):
        axis.annotate(row["label"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    costs = [(x if lower_is_better else -x, y) for x, y in zip(xs, ys, strict=True)]
    front = sorted(pareto_front(costs), key=lambda index: xs[index])
    axis.plot(
        [xs[i] for i in front], [ys[i] for i in front], color="#dd8452", linestyle="--", label="Pareto front"
    )
    axis.margins(x=0.15, y=0.2)  # room for the labels of the extreme points
    _log_x_when_spread(axis, xs, axis_label)
    _accuracy_axis_top(axis)
    axis.set_ylabel("test accuracy")
    axis.legend(loc="best", fontsize=8)
    _save(figure, path)


def plot_learning_curves(
    curves: dict[str, list[dict]],
    path: Path,
    points: dict[str, dict] | None = None,
    flat: dict[str, dict] | None = None,
) -> None:
    """Accuracy against labelled training reviews (log x), one line per model, a mean ± std band.
    ``points``: models measured at one size (``train_examples``, ``accuracy`` and its 95% interval
    ``low`` / ``high``), drawn as a marker with the interval; ``flat``: models that read no label
    (``accuracy``, ``low``, ``high``), a dashed line across the sizes with the interval as a band."""
    curves = {name: points for name, points in curves.items() if len(points) > 1}
    points, flat = points or {}, flat or {}
    if not (curves or points):
        return
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for name, curve in sorted(curves.items()):
        curve = sorted(curve, key=lambda point: point["train_examples_mean"])
        xs = np.array([point["train_examples_mean"] for point in curve], dtype=float)
        means = np.array([point["accuracy_mean"] for point in curve])
        stds = np.array([_std(point) for point in curve])
        axis.plot(xs, means, marker="o", label=name)
        axis.fill_between(xs, np.clip(means - stds, 0, 1), np.clip(means + stds, 0, 1), alpha=0.2)
    for name, point in sorted(points.items()):
        spread = [[point["accuracy"] - point["low"]], [point["high"] - point["accuracy"]]]
        axis.errorbar([point["train_examples"]], [point["accuracy"]], yerr=spread, fmt="D", capsize=4, label=name)
    sizes = [float(p["train_examples_mean"]) for curve in curves.values() for p in curve]
    sizes += [float(point["train_examples"]) for point in points.values()]
    for name, line in sorted(flat.items()):
        axis.axhline(line["accuracy"], linestyle="--", color="0.25", label=f"{name} (no labels)")
        axis.axhspan(line["low"], line["high"], color="0.25", alpha=0.1)
    _log_x_when_spread(axis, sizes, "labelled training reviews")
    _accuracy_axis_top(axis)
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize=8)
    _save(figure, path)


def plot_accuracy_by_group(groups: list[dict], path: Path, title: str, axis_label: str) -> None:
    """Bars of accuracy per group (e.g. review-length deciles) from 0, the accuracy written in each bar
    and the count above it."""
    if not groups:
        return
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 3.4))
    positions = np.arange(len(groups))
    axis.bar(positions, [group["accuracy"] for group in groups], color="#4c72b0")
    for position, group in zip(positions, groups, strict=True):  # bars from 0: the values say the rest
        axis.text(position, group["accuracy"] + 0.01, f"{group['count']:,}", ha="center", fontsize=7)
        axis.text(position, 0.03, f"{100 * group['accuracy']:.1f}%", ha="center", rotation=90, color="white",
                  fontsize=7)  # fmt: skip
    axis.set_xticks(positions, [group["group"] for group in groups], rotation=30, ha="right", fontsize=7)
    axis.set_ylim(0.0, 1.08)
    axis.set_xlabel(axis_label)
    axis.set_ylabel("accuracy")
    axis.set_title(title)
    _save(figure, path)
