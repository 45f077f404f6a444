"""The benchmark's tables: every run as it stands, aggregated per (row, training size) into
``leaderboard.md``, ``leaderboard.csv`` and ``runs.csv``.

Columns are derived from what the runs recorded, the way scikit-learn's ``cv_results_`` derives
``mean_test_x`` / ``std_test_x``: every numeric value in ``metrics.json`` (nested sections flattened
with dotted names, e.g. ``validation.valid_accuracy``) and the out-of-domain metrics of
``analysis/analysis.json`` (``ood_accuracy``, ...) become ``<name>_mean`` and ``<name>_std`` over the
seeds; a new metric reaches the CSV without touching this file. The Markdown table shows a choice
(``MARKDOWN_COLUMNS``, ``MULTICLASS_COLUMNS``), one table per class set (``task_groups``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.data.labels import SENTIMENT, LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import atomic_path, write_text_atomic
from imdb_sentiment.pipelines.suites import VARY_MEANING, PlannedRun, Suite, SuiteRow
from imdb_sentiment.runs import machine_info, now_utc, read_json

# Values that name a run rather than measure it: in runs.csv, not averaged.
IDENTITY = ("seed", "data_seed", "run_name")

# The Markdown leaderboard: (column, header, format). "spread" is the mean ± std of <column>_mean /
# <column>_std in %, with the seed count beside it; a column is shown only when some row has a value.
MARKDOWN_COLUMNS = (
    ("label", "model", "{}"),
    ("train_size", "train size", "{}"),
    ("seeds", "n (seeds)", "{}"),
    ("accuracy", "accuracy", "spread"),
    ("accuracy_ci95_low_mean", "95% interval (test sample)", "interval"),
    ("f1_mean", "F1", "{:.4f}"),
    ("roc_auc_mean", "ROC-AUC", "{:.4f}"),
    ("ood_accuracy", "out of domain", "spread"),
    ("ece_mean", "ECE", "{:.3f}"),
    ("train_seconds_mean", "train s", "{:,.1f}"),
    ("inference_seconds_mean", "test s", "{:,.1f}"),
    ("inference_reviews_per_second_mean", "reviews/s batched", "{:,.0f}"),
    ("single_reviews_per_second_mean", "reviews/s one by one", "{:,.1f}"),
    ("peak_memory_mb_mean", "peak MB", "{:,.0f}"),
    ("peak_gpu_memory_mb_mean", "peak GPU MB", "{:,.0f}"),
    ("parameters_mean", "parameters", "{:,.0f}"),
    ("trainable_parameters_mean", "trainable", "{:,.0f}"),
    ("trainable_share_mean", "trainable %", "pct"),
    ("model_size_mb_mean", "size MB", "{:,.1f}"),
    ("device", "device", "{}"),
    ("writeup_claimed", "write-up claimed", "pct1"),
    ("writeup_kaggle", "write-up Kaggle file", "pct1"),
)
# A board of K-class runs (no F1 of a class 1): macro-F1 in the F1 column's place, then, for ordered
# classes (ratings), the mean absolute error (stars for IMDB ratings) and the share within one step.
MULTICLASS_COLUMNS = tuple(
    column
    for key, header, style in MARKDOWN_COLUMNS
    for column in (
        [
            ("macro_f1_mean", "macro-F1", "{:.4f}"),
            ("mae_mean", "MAE", "{:.3f}"),
            ("within_one_mean", "within one %", "pct"),
        ]
        if key == "f1_mean"
        else [(key, "ROC-AUC (one-vs-rest)" if key == "roc_auc_mean" else header, style)]
    )
)


def read_optional_json(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path) if path.is_file() else None
    except UserError:
        return None


def flat_values(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars of a JSON object, nested sections as dotted names; lists (confusion matrix) left out."""
    values: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            values.update(flat_values(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, str | int | float | bool):
            values[f"{prefix}{key}"] = value
    return values


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class RunRecord:
    """One run of the suite as it stands: its metrics when it completed, else why not."""

    planned: PlannedRun
    status: str  # completed | reused | failed
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def measured(self) -> dict[str, Any]:
        """Everything the run measured, flat: metrics.json, then the out-of-domain metrics as ood_*."""
        values = flat_values(self.metrics)
        analysis = read_optional_json(self.planned.run_dir / "analysis" / "analysis.json") or {}
        ood = analysis.get("out_of_domain") or {}
        values.update({f"ood_{key}": value for key, value in flat_values(ood).items() if key != "path"})
        if (task := self.task()) is not None:
            values["classes"] = task
        return values

    def task(self) -> str | None:
        """The run's classes, comma-separated, from its data.json; None for sentiment (or unrecorded),
        so a board of binary runs keeps its columns exactly."""
        record = read_optional_json(self.planned.run_dir / "data.json") or {}
        try:
            classes = LabelSpace.from_json(record.get("classes"))
        except ValueError:
            return None
        return None if classes.is_sentiment else ", ".join(classes.names)

    def row(self) -> dict[str, Any]:
        planned = self.planned
        measured = {key: value for key, value in self.measured().items() if key not in IDENTITY}
        return {"label": planned.label, "train_size": planned.train_size, "seed": planned.config.seed,
                "data_seed": planned.config.data.seed, "status": self.status, "error": self.error, **measured,
                "run_dir": str(planned.run_dir), "config": planned.row.config}  # fmt: skip


@dataclass
class BenchmarkResult:
    suite: Suite
    output_dir: Path
    records: list[RunRecord]
    skipped: list[tuple[SuiteRow, str]]
    command: str = ""
    main_process: bool = True  # False on the other ranks under a launcher: they write nothing

    def runs_frame(self) -> pd.DataFrame:
        return pd.DataFrame([record.row() for record in self.records])

    def leaderboard_frame(self) -> pd.DataFrame:
        """One line per (row, train size): mean and std over seeds, sorted by mean accuracy."""
        return aggregate(self.records)


def _summarise(values: list[dict[str, Any]]) -> dict[str, Any]:
    """cv_results_-style columns: <name>_mean / <name>_std for numbers (std with ddof=1, a sample of
    seeds; empty for one seed), the value itself for text and flags (distinct values joined by "; ")."""
    names = list(dict.fromkeys(name for value in values for name in value if name not in IDENTITY))
    row: dict[str, Any] = {}
    for name in names:
        present = [value[name] for value in values if value.get(name) is not None]
        if present and all(is_number(item) for item in present):
            row[f"{name}_mean"] = float(np.mean(present))
            row[f"{name}_std"] = float(np.std(present, ddof=1)) if len(present) > 1 else None
        elif present:
            distinct = list(dict.fromkeys(present))
            row[name] = distinct[0] if len(distinct) == 1 else "; ".join(str(item) for item in distinct)
    return row


def aggregate(records: list[RunRecord]) -> pd.DataFrame:
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.planned.label, str(record.planned.train_size)), []).append(record)
    rows = []
    for (label, size), members in groups.items():
        done = [record for record in members if record.status != "failed"]
        reference = members[0].planned.row.writeup
        rows.append({
            "label": label, "train_size": size, "seeds": len(done), "failed": len(members) - len(done),
            **_summarise([record.measured() for record in done]),
            "writeup_row": reference.row if reference else None,
            "writeup_claimed": reference.claimed if reference else None,
            "writeup_kaggle": reference.kaggle if reference else None,
            "config": members[0].planned.row.config,
            "run_dirs": ";".join(str(record.planned.run_dir) for record in members),
            "errors": "; ".join(record.error for record in members if record.error) or None,
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    if "accuracy_mean" not in frame:  # nothing completed yet
        frame["accuracy_mean"] = np.nan
    # Largest training set first (the leaderboard proper), then by accuracy within a size.
    frame["_size"] = [float("inf") if size == "full" else float(size) for size in frame["train_size"]]
    frame = frame.sort_values(["_size", "accuracy_mean"], ascending=[False, False], na_position="last")
    return frame.drop(columns="_size").reset_index(drop=True)


def main_rows(board: pd.DataFrame) -> pd.DataFrame:
    """Each model once, at its largest training size: the leaderboard proper."""
    if board.empty:
        return board
    return board.drop_duplicates("label", keep="first").reset_index(drop=True)


def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def spread_cell(row: dict[str, Any], key: str) -> str:
    """Mean ± std in %; with one seed the mean alone (the seeds column says n=1): no spread is
    claimed that was not measured."""
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if not present(mean):
        return "–"
    text = f"**{100 * mean:.2f}**" if key == "accuracy" else f"{100 * mean:.2f}"
    return text + (f" ± {100 * std:.2f}" if present(std) else "")


def _cell(row: dict[str, Any], key: str, style: str) -> str:
    if style == "spread":
        return spread_cell(row, key)
    if style == "interval":  # a test sample's Wilson 95% interval of the accuracy, in %
        low, high = row.get(key), row.get("accuracy_ci95_high_mean")
        return f"{100 * low:.1f}–{100 * high:.1f}" if present(low) and present(high) else "–"
    value = row.get(key)
    if not present(value):
        return "–"
    if style == "pct":
        return f"{100 * value:.2f}"
    if style == "pct1":
        return f"{100 * value:.1f}"
    return style.format(value)


def learning_curve_table(board: pd.DataFrame) -> str | None:
    """Accuracy (mean ± std) per model and training size, or None with a single size."""
    sizes = list(dict.fromkeys(board["train_size"]))[::-1] if not board.empty else []
    if len(sizes) < 2:
        return None
    lines = ["| model | " + " | ".join(f"n={size}" for size in sizes) + " |", "|" + "---|" * (len(sizes) + 1)]
    for label in dict.fromkeys(board["label"]):
        cells = []
        for size in sizes:
            match = board[(board["label"] == label) & (board["train_size"] == size)].to_dict("records")
            cells.append(spread_cell(match[0], "accuracy").replace("**", "") if match else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def task_groups(board: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """The board split by class set, each in the board's order: runs of different tasks (sentiment and
    star ratings, say) are never ranked against each other. One task: [(None, board)]."""
    if board.empty or "classes" not in board or not board["classes"].map(present).any():
        return [(None, board)]
    tasks = board["classes"].map(lambda value: value if present(value) else ", ".join(SENTIMENT.names))
    if tasks.nunique() == 1:
        return [(None, board)]
    return [(task, board[tasks == task].reset_index(drop=True)) for task in dict.fromkeys(tasks)]


def task_title(task: str) -> str:
    return "Classes: " + (task if len(task) <= 200 else task[:199] + "…")


def leaderboard_table(board: pd.DataFrame, keys: tuple[str, ...] | None = None) -> str:
    """The Markdown table of ``board``'s rows in their order; ``keys``: only these columns (the
    report splits the wide table in two). Binary runs (an F1 of class 1) get :data:`MARKDOWN_COLUMNS`,
    K-class runs :data:`MULTICLASS_COLUMNS`; one table holds one task (see :func:`task_groups`)."""
    records = board.to_dict("records")
    binary = any(present(row.get("f1_mean")) for row in records) or not records
    columns = MARKDOWN_COLUMNS if binary else MULTICLASS_COLUMNS
    shown = [(key, header, style) for key, header, style in columns if keys is None or key in keys
             if any(present(row.get(f"{key}_mean" if style == "spread" else key)) for row in records)]  # fmt: skip
    lines = ["| rank | " + " | ".join(header for _, header, _ in shown) + " |", "|" + "---|" * (len(shown) + 1)]
    for rank, row in enumerate(records, start=1):
        lines.append(f"| {rank} | " + " | ".join(_cell(row, key, style) for key, _, style in shown) + " |")
    return "\n".join(lines)


def grouped_tables(board: pd.DataFrame, heading: str) -> list[str]:
    """The leaderboard table, or one per task under a ``heading`` (Markdown level) naming its classes."""
    groups = task_groups(board)
    if len(groups) == 1:
        return [leaderboard_table(board)]
    lines: list[str] = []
    for task, rows in groups:
        lines += [f"{heading} {task_title(task or '')}", "", leaderboard_table(rows), ""]
    return lines[:-1]


def describe_task(board: pd.DataFrame) -> str | None:
    """The classes of a board that holds one task other than sentiment (several tasks: each table names
    its own), with what its mean absolute error counts, when it has one."""
    groups = task_groups(board)
    if len(groups) > 1 or board.empty or "classes" not in board or not present(board["classes"].iloc[0]):
        return None
    task = str(board["classes"].iloc[0])
    units = board["mae_units"].dropna() if "mae_units" in board else pd.Series(dtype=object)
    if not units.empty:
        task += "; MAE in " + (
            "the labels' own units" if units.iloc[0] == "label value" else "steps of their order"
        )
    return task


def describe_seeds(suite: Suite) -> str:
    if suite.seeds == 1:
        return "one seed per row (n=1): accuracy in %, no spread measured"
    return f"{suite.seeds} seeds per row ({VARY_MEANING[suite.vary]}); accuracy in %, mean ± std over seeds"


def describe_out_of_domain(records: list[RunRecord]) -> str | None:
    """Which out-of-domain set the 'out of domain' column scored, from the runs' analyses."""
    sets = set()
    for record in records:
        analysis = read_optional_json(record.planned.run_dir / "analysis" / "analysis.json") or {}
        if ood := analysis.get("out_of_domain"):
            sets.add(f"{ood.get('name', '?')} ({ood.get('examples', 0):,} examples, {ood.get('path', '?')})")
    return "; ".join(sorted(sets)) or None


def describe_machine(records: list[RunRecord]) -> str:
    info = machine_info()
    loads = []
    for record in records:
        environment = read_optional_json(record.planned.run_dir / "environment.json") or {}
        if environment.get("load_average"):
            loads.append(environment["load_average"][0])
    load = f"; 1-min load at run starts {min(loads):.2f}–{max(loads):.2f}" if loads else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']} ({info['cpu_count']} cores){gpu}{load}"


def describe_provenance(records: list[RunRecord]) -> str:
    """The toolkit version and git commit(s) the runs were made with, from their environment.json."""
    try:
        version = metadata.version("imdb-sentiment")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree without install
        version = "unknown"
    commits = set()
    for record in records:
        environment = read_optional_json(record.planned.run_dir / "environment.json") or {}
        commits.add((environment.get("git_commit") or "")[:12])
    commits.discard("")
    return f"imdb-sentiment {version}; git commit {', '.join(sorted(commits)) or 'not recorded'}"


def describe_test_set(records: list[RunRecord]) -> str:
    sizes = sorted({record.metrics.get("examples") for record in records if record.metrics.get("examples")})
    full = all(record.metrics.get("full_test_set", True) for record in records if record.metrics)
    if not sizes:
        return "–"
    what = "the full test split" if full else "a stratified test SAMPLE (test_limit), not the full test set"
    return f"{what}, {', '.join(f'{size:,}' for size in sizes)} reviews"


def leaderboard_markdown(result: BenchmarkResult, board: pd.DataFrame) -> str:
    suite = result.suite
    lines = [f"# Leaderboard: {suite.name}", ""]
    if suite.description:
        lines += [suite.description, ""]
    ood = describe_out_of_domain(result.records)
    lines += [f"- Machine: {describe_machine(result.records)}",
              f"- Seeds: {describe_seeds(suite)}.",
              f"- Test set: {describe_test_set(result.records)}."
              + (f" Out of domain: {ood}." if ood else ""),
              *([f"- {task_title(task)}."] if (task := describe_task(board)) else []),
              f"- Made with {describe_provenance(result.records)}.",
              f"- Command: `{result.command or 'imdb-sentiment benchmark'}`; written {now_utc()}.", ""]  # fmt: skip
    lines += grouped_tables(main_rows(board), "##") if not board.empty else ["No run has completed yet."]
    curves = learning_curve_table(board)
    if curves:
        spread = "mean ± std over seeds" if suite.seeds > 1 else "one seed per point, n=1"
        lines += ["", f"## Learning curves (test accuracy %, {spread})", "", curves]
    if not board.empty:
        lines += ["", "## Where each row comes from", ""]
        for row in board.to_dict("records"):
            folders = ", ".join(f"`{Path(folder).name}`" for folder in row["run_dirs"].split(";"))
            lines.append(
                f"- {row['label']} (train size {row['train_size']}): config `{row['config']}`; runs {folders}"
            )
    failed = [record for record in result.records if record.status == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- `{record.planned.run_dir.name}`: {record.error}" for record in failed]
    if result.skipped:
        lines += ["", "## Skipped rows", ""]
        lines += [f"- `{row.name or row.config}`: {reason}" for row, reason in result.skipped]
    return "\n".join(lines) + "\n"


def write_tables(result: BenchmarkResult, board: pd.DataFrame | None = None) -> list[Path]:
    """leaderboard.md, leaderboard.csv, runs.csv: cheap, rewritten after every run. ``board``: the
    leaderboard frame when the caller has it already."""
    board = result.leaderboard_frame() if board is None else board
    markdown, csv, runs = (result.output_dir / name for name in ("leaderboard.md", "leaderboard.csv", "runs.csv"))
    write_text_atomic(markdown, leaderboard_markdown(result, board))
    with atomic_path(csv) as tmp:
        board.to_csv(tmp, index=False)
    with atomic_path(runs) as tmp:
        result.runs_frame().to_csv(tmp, index=False)
    return [markdown, csv, runs]
