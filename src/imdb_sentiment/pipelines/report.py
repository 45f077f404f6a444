"""``report.html``: the benchmark as one self-contained page (figures embedded as data URIs, no
scripts, no network), so it opens from disk anywhere and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_sentiment.evaluation.plots import plot_accuracy_against, plot_accuracy_bars, plot_learning_curves
from imdb_sentiment.io_utils import write_text_atomic
from imdb_sentiment.pipelines.leaderboard import (
    BenchmarkResult,
    describe_machine,
    describe_out_of_domain,
    describe_provenance,
    describe_seeds,
    describe_task,
    describe_test_set,
    leaderboard_table,
    learning_curve_table,
    main_rows,
    present,
    task_groups,
    task_title,
)
from imdb_sentiment.runs import now_utc, read_json

# The leaderboard in two tables that each fit the page: how good, then what it costs.
ACCURACY_COLUMNS = ("label", "train_size", "seeds", "accuracy", "f1_mean", "macro_f1_mean", "mae_mean", "within_one_mean",
                    "roc_auc_mean", "ood_accuracy", "ece_mean", "writeup_claimed", "writeup_kaggle")  # fmt: skip
COST_COLUMNS = ("label", "train_size", "train_seconds_mean", "inference_seconds_mean",
                "inference_reviews_per_second_mean", "single_reviews_per_second_mean", "peak_memory_mb_mean",
                "peak_gpu_memory_mb_mean", "parameters_mean", "trainable_parameters_mean", "trainable_share_mean",
                "model_size_mb_mean", "device")  # fmt: skip

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } td:nth-child(2), th:nth-child(2) { text-align: left; }
figure { display: inline-block; margin: 0.5rem; vertical-align: top; max-width: 47%; }
.scroll { overflow-x: auto; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.8rem; color: #555; }
section.run { border-top: 1px solid #ddd; padding-top: 0.5rem; }
.mistake { font-size: 0.8rem; color: #444; margin: 0.2rem 0; }
"""


def _image(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def _markdown_table_to_html(table: str) -> str:
    lines = [line.strip().strip("|").split(" | ") for line in table.splitlines() if not line.startswith("|---")]
    head, body = lines[0], lines[1:]
    return ('<div class="scroll"><table><thead><tr>' + cells(head, "th") + "</tr></thead><tbody>"
            + "".join("<tr>" + cells(row, "td") + "</tr>" for row in body) + "</tbody></table></div>")  # fmt: skip


def cells(row: list[str], tag: str) -> str:
    return "".join(f"<{tag}>{html.escape(cell.strip().replace('**', ''))}</{tag}>" for cell in row)


def _figure_rows(board: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for row in board.to_dict("records"):
        if not present(row.get("accuracy_mean")):
            continue
        size = row["train_size"]
        label = row["label"] + ("" if size == "full" else f" (n={size})")
        rows.append({**row, "label": label})
    return rows


def _bars_caption(rows: list[dict[str, Any]]) -> str:
    """Says what the accuracy figure shows, and only that: error bars when some row has several
    seeds, the write-up's numbers when some row carries them."""
    parts = ["Test accuracy per model (axis from 0; the value is written on each bar)"]
    if any(present(row.get("accuracy_std")) for row in rows):
        parts.append("error bars: std over seeds")
    else:
        parts.append("one seed per row (n=1): no spread measured")
    if any(present(row.get(key)) for row in rows for key in ("writeup_claimed", "writeup_kaggle")):
        parts.append(
            "markers: the write-up's claimed accuracy and its Kaggle file's, also in the leaderboard table"
        )
    return "; ".join(parts)


def _summary_figures(board: pd.DataFrame, figures: Path) -> list[str]:
    rows = _figure_rows(board)
    largest = [row for row in rows if row["train_size"] == "full"] or rows
    plot_accuracy_bars(largest, figures / "accuracy.png")
    plot_accuracy_against(
        largest, "train_seconds_mean", "training time (s)", figures / "accuracy_vs_train_time.png", True
    )
    plot_accuracy_against(largest, "inference_reviews_per_second_mean", "inference throughput (reviews/s, batched)",
                          figures / "accuracy_vs_throughput.png", False)  # fmt: skip
    curves: dict[str, list[dict[str, Any]]] = {}
    for row in board.to_dict("records"):
        if present(row.get("accuracy_mean")) and present(row.get("train_examples_mean")):
            curves.setdefault(row["label"], []).append(row)
    plot_learning_curves(curves, figures / "learning_curves.png")
    return [
        _image(figures / "accuracy.png", _bars_caption(largest)),
        _image(figures / "accuracy_vs_train_time.png", "Accuracy against training time; dashed: the Pareto front"),
        _image(figures / "accuracy_vs_throughput.png", "Accuracy against batched inference throughput; dashed: the Pareto front"),
        _image(figures / "learning_curves.png", "Learning curves: accuracy against labelled training reviews (band: ± std over seeds, where measured)"),
    ]  # fmt: skip


def _mistake(mistake: dict[str, Any]) -> str:
    """One confident mistake: the true label, what the model said, how sure it was, the review.
    Sentiment's mistakes carry P(positive); any other task's name their classes."""
    text = " ".join(mistake["text"].split())
    text = text if len(text) <= 400 else text[:400] + " …"
    if "prob_positive" in mistake:
        true = "positive" if mistake["label"] else "negative"
        said = "negative" if mistake["label"] else "positive"
        verdict = f"true label {true}; predicted {said}, P(positive) {mistake['prob_positive']:.3f}"
    else:
        true, said = mistake["label"], mistake["predicted"]
        verdict = f"true label {true}; predicted {said}, P({said}) {mistake['confidence']:.3f}, P({true}) {mistake['prob_true']:.3f}"
    return f'<p class="mistake"><b>{verdict}</b>: {html.escape(text)}</p>'


def _worst_class(per_class: dict[str, dict[str, Any]]) -> str | None:
    """The class a K-class run recognises least, and what it takes it for."""
    scored = [(row["recall"], name, row) for name, row in per_class.items() if row["recall"] is not None]
    if not scored:
        return None
    recall, name, row = min(scored, key=lambda item: item[0])
    mistaken = f", most often taken for {row['most_mistaken_for']}" if row["most_mistaken_for"] is not None else ""
    return f"weakest class {name}: recall {100 * recall:.1f}%{mistaken}"


def _run_section(run_dir: Path) -> str:
    plots, analysis_dir = run_dir / "plots", run_dir / "analysis"
    parts = [f'<section class="run"><h3>{html.escape(run_dir.name)}</h3>']
    analysis = read_json(analysis_dir / "analysis.json") if (analysis_dir / "analysis.json").is_file() else None
    if analysis:
        facts = [f"test accuracy {100 * analysis['accuracy']:.2f}% on {analysis['examples']:,} reviews",
                 f"ECE {analysis['calibration']['ece']:.3f}"]  # fmt: skip
        if ordinal := analysis.get("ordinal"):
            facts.append(
                f"mean absolute error {ordinal['mae']:.3f}, {100 * ordinal['within_one']:.1f}% within one step"
            )
        if worst := _worst_class(analysis.get("per_class") or {}):
            facts.append(worst)
        if ood := analysis.get("out_of_domain"):
            facts.append(f"{ood.get('name', 'MR')} (out of domain) {100 * ood['accuracy']:.2f}%")
        elif skipped := analysis.get("out_of_domain_skipped"):
            facts.append(f"out of domain not scored: {skipped}")
        for name, cue in analysis["accuracy_by_cues"].items():
            with_, without = cue["with"]["accuracy"], cue["without"]["accuracy"]
            if with_ is not None and without is not None:
                facts.append(f"{name} words: {100 * with_:.1f}% with vs {100 * without:.1f}% without")
        parts.append("<p>" + html.escape("; ".join(facts)) + ".</p>")
    parts += [_image(plots / "training_curves.png", "training / validation curves"),
              _image(plots / "confusion_matrix.png", "confusion matrix"),
              _image(plots / "reliability.png", "reliability diagram"),
              _image(analysis_dir / "accuracy_by_length.png", "accuracy by review length")]  # fmt: skip
    if analysis and analysis["confident_mistakes"]:
        parts.append("<details><summary>Most confident mistakes</summary>")
        parts += [_mistake(mistake) for mistake in analysis["confident_mistakes"][:5]]
        parts.append("</details>")
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def write_report(result: BenchmarkResult, board: pd.DataFrame) -> Path:
    figures = result.output_dir / "figures"
    figures.mkdir(exist_ok=True)
    suite = result.suite
    body = [f"<h1>Benchmark: {html.escape(suite.name)}</h1>"]
    if suite.description:
        body.append(f"<p>{html.escape(suite.description)}</p>")
    ood = describe_out_of_domain(result.records)
    facts = [
        f"Machine: {describe_machine(result.records)}",
        f"Test set: {describe_test_set(result.records)}" + (f"; out of domain: {ood}" if ood else ""),
        f"Seeds: {describe_seeds(suite)}",
        f"Made with {describe_provenance(result.records)}; report written {now_utc()}",
        f"Command: {result.command or 'imdb-sentiment benchmark'}",
    ]
    body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in facts) + "</ul>")
    if board.empty:
        body.append("<p>No run has completed yet.</p>")
    else:
        body.append("<h2>Leaderboard</h2>")
        if task := describe_task(board):
            body.append(f"<p>{html.escape(task_title(task))}.</p>")
        groups = task_groups(main_rows(board))
        for task, leaders in groups:  # one task per table: a rating run is never ranked against sentiment
            if len(groups) > 1:
                body.append(f"<h3>{html.escape(task_title(task or ''))}</h3>")
            body.append(_markdown_table_to_html(leaderboard_table(leaders, ACCURACY_COLUMNS)))
            body.append("<h4>Cost, speed and size (same order)</h4>" if len(groups) > 1
                        else "<h3>Cost, speed and size (same order)</h3>")  # fmt: skip
            body.append(_markdown_table_to_html(leaderboard_table(leaders, COST_COLUMNS)))
        curves = learning_curve_table(board)
        if curves:
            body.append("<h2>Learning curves</h2>" + _markdown_table_to_html(curves))
        body.append("<h2>Accuracy, cost and speed</h2>" + "".join(_summary_figures(board, figures)))
    failed = [record for record in result.records if record.status == "failed"]
    if failed or result.skipped:
        items = [f"{record.planned.run_dir.name}: failed: {record.error}" for record in failed]
        items += [f"{row.name or row.config}: skipped: {reason}" for row, reason in result.skipped]
        body.append(
            "<h2>Not in the table</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
        )
    runs = [record.planned.run_dir for record in result.records if record.status != "failed"]
    if runs:
        body.append("<h2>Runs</h2>" + "\n".join(_run_section(run_dir) for run_dir in runs))
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>imdb-sentiment benchmark: "
            f"{html.escape(suite.name)}</title><style>{STYLE}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")  # fmt: skip
    path = result.output_dir / "report.html"
    write_text_atomic(path, page)
    return path
