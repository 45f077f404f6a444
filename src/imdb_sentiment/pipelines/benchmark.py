"""Benchmark: run a suite (rows x seeds x training-set sizes) and rank the rows on the test set.

Every run of the suite is validated before the first one trains. Data is loaded once per distinct
data config. Each run gets an ordinary run folder with a fixed name under the output folder, so a
re-run skips the runs that completed (and resumes interrupted ones from their checkpoints); a row
that fails is reported and the others go on. After every run the leaderboard (Markdown + CSV), the
per-run table and the HTML report are rebuilt from the run folders, so each number traces back to a
run.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.config import dump_config
from imdb_sentiment.data.splits import PreparedData, load_data
from imdb_sentiment.errors import RunInterrupted, RunPreempted, UserError
from imdb_sentiment.io_utils import atomic_path, ensure_writable_dir, write_json_atomic, write_text_atomic
from imdb_sentiment.pipelines.analyze import analyze_run
from imdb_sentiment.pipelines.experiment import run_experiment
from imdb_sentiment.pipelines.suites import VARY_MEANING, PlannedRun, Suite, SuiteRow, expand_suite
from imdb_sentiment.runs import machine_info, now_utc, read_json, read_status

logger = logging.getLogger("imdb_sentiment.benchmark")

# Per-run values averaged over seeds (mean and std columns); the rest are taken from the first seed.
AVERAGED = ("accuracy", "f1", "roc_auc", "ece", "mr_accuracy", "train_seconds", "inference_reviews_per_second",
            "single_reviews_per_second", "single_review_ms_median", "peak_memory_mb", "inference_seconds",
            "peak_gpu_memory_mb")  # fmt: skip
SHARED = ("parameters", "trainable_parameters", "trainable_share", "model_size_mb", "device", "train_examples",
          "examples", "full_test_set")  # fmt: skip
# Shown only when some row has them (GPU runs).
OPTIONAL_COLUMNS = ("peak_gpu_memory_mb_mean",)

# The Markdown leaderboard: (column, header, format).
MARKDOWN_COLUMNS = (
    ("label", "model", "{}"),
    ("train_size", "train size", "{}"),
    ("accuracy", "accuracy", "pct"),
    ("f1_mean", "F1", "{:.4f}"),
    ("roc_auc_mean", "ROC-AUC", "{:.4f}"),
    ("mr_accuracy", "MR (out of domain)", "pct"),
    ("ece_mean", "ECE", "{:.3f}"),
    ("train_seconds_mean", "train s", "{:,.1f}"),
    ("inference_seconds_mean", "test s", "{:,.1f}"),
    ("inference_reviews_per_second_mean", "reviews/s batched", "{:,.0f}"),
    ("single_reviews_per_second_mean", "reviews/s one by one", "{:,.1f}"),
    ("peak_memory_mb_mean", "peak MB", "{:,.0f}"),
    ("peak_gpu_memory_mb_mean", "peak GPU MB", "{:,.0f}"),
    ("parameters", "parameters", "{:,.0f}"),
    ("trainable_parameters", "trainable", "{:,.0f}"),
    ("trainable_share", "trainable %", "pct"),
    ("model_size_mb", "size MB", "{:,.1f}"),
    ("device", "device", "{}"),
    ("writeup_claimed", "write-up claimed", "pct1"),
    ("writeup_kaggle", "write-up Kaggle file", "pct1"),
)


@dataclass
class RunRecord:
    """One run of the suite as it stands: its metrics when it completed, else why not."""

    planned: PlannedRun
    status: str  # completed | reused | failed
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def row(self) -> dict[str, Any]:
        metrics, planned = self.metrics, self.planned
        analysis = _read_optional_json(planned.run_dir / "analysis" / "analysis.json")
        ood = (analysis or {}).get("out_of_domain") or {}
        return {
            "label": planned.label, "train_size": planned.train_size, "seed": planned.config.seed,
            "data_seed": planned.config.data.seed, "status": self.status, "error": self.error,
            **{key: metrics.get(key) for key in (*AVERAGED, *SHARED) if key != "mr_accuracy"},
            "mr_accuracy": ood.get("accuracy"),
            "run_dir": str(planned.run_dir), "config": planned.row.config,
        }  # fmt: skip


@dataclass
class BenchmarkResult:
    suite: Suite
    output_dir: Path
    records: list[RunRecord]
    skipped: list[tuple[SuiteRow, str]]
    command: str = ""

    def runs_frame(self) -> pd.DataFrame:
        return pd.DataFrame([record.row() for record in self.records])

    def leaderboard_frame(self) -> pd.DataFrame:
        """One line per (row, train size): mean and std over seeds, sorted by mean accuracy."""
        return aggregate(self.records)

    def write_tables(self, board: pd.DataFrame | None = None) -> list[Path]:
        """leaderboard.md, leaderboard.csv, runs.csv: cheap, rewritten after every run. ``board``: the
        leaderboard frame when the caller has it already."""
        board = self.leaderboard_frame() if board is None else board
        markdown, csv, runs = (
            self.output_dir / name for name in ("leaderboard.md", "leaderboard.csv", "runs.csv")
        )
        write_text_atomic(markdown, leaderboard_markdown(self, board))
        with atomic_path(csv) as tmp:
            board.to_csv(tmp, index=False)
        with atomic_path(runs) as tmp:
            self.runs_frame().to_csv(tmp, index=False)
        return [markdown, csv, runs]

    def write(self) -> list[Path]:
        """The tables and report.html (figures take seconds: written at the end or on interruption)."""
        from imdb_sentiment.pipelines.report import write_report  # matplotlib: only when writing

        board = self.leaderboard_frame()  # aggregated once for the tables and the report
        return [*self.write_tables(board), write_report(self, board)]


def aggregate(records: list[RunRecord]) -> pd.DataFrame:
    rows = []
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.planned.label, str(record.planned.train_size)), []).append(record)
    for (label, size), members in groups.items():
        done = [record for record in members if record.status != "failed"]
        first = members[0].planned
        row: dict[str, Any] = {
            "label": label,
            "train_size": size,
            "seeds": len(done),
            "failed": len(members) - len(done),
        }
        values = [record.row() for record in done]
        for key in AVERAGED:
            numbers = [value[key] for value in values if value.get(key) is not None]
            row[f"{key}_mean"] = float(np.mean(numbers)) if numbers else None
            # std over seeds (ddof=1: a sample of seeds); undefined for one seed.
            row[f"{key}_std"] = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
        for key in SHARED:
            row[key] = values[0].get(key) if values else None
        reference = first.row.writeup
        row["writeup_row"] = reference.row if reference else None
        row["writeup_claimed"] = reference.claimed if reference else None
        row["writeup_kaggle"] = reference.kaggle if reference else None
        row["config"] = first.row.config
        row["run_dirs"] = ";".join(str(record.planned.run_dir) for record in members)
        row["errors"] = "; ".join(record.error for record in members if record.error) or None
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # Largest training set first (the leaderboard proper), then by accuracy within a size.
    frame["_size"] = [float("inf") if size == "full" else float(size) for size in frame["train_size"]]
    frame = frame.sort_values(["_size", "accuracy_mean"], ascending=[False, False], na_position="last")
    return frame.drop(columns="_size").reset_index(drop=True)


def main_rows(board: pd.DataFrame) -> pd.DataFrame:
    """Each model once, at its largest training size: the leaderboard proper."""
    if board.empty:
        return board
    return board.drop_duplicates("label", keep="first").reset_index(drop=True)


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
            cells.append(_accuracy_cell(match[0], "accuracy").replace("**", "") if match else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _cell(value: Any, style: str) -> str:
    if not _present(value):
        return "–"
    if style == "pct":
        return f"{100 * value:.2f}"
    if style == "pct1":
        return f"{100 * value:.1f}"
    return style.format(value)


def _accuracy_cell(row: dict[str, Any], key: str) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "–"
    text = f"**{100 * mean:.2f}**" if key == "accuracy" else f"{100 * mean:.2f}"
    return text + (f" ± {100 * std:.2f}" if std is not None and not np.isnan(std) else "")


def leaderboard_table(board: pd.DataFrame) -> str:
    records = board.to_dict("records")
    columns = [column for column in MARKDOWN_COLUMNS
               if column[0] not in OPTIONAL_COLUMNS or any(_present(row.get(column[0])) for row in records)]  # fmt: skip
    lines = ["| rank | " + " | ".join(header for _, header, _ in columns) + " |",
             "|" + "---|" * (len(columns) + 1)]  # fmt: skip
    for rank, row in enumerate(records, start=1):
        cells = []
        for key, _, style in columns:
            if key in ("accuracy", "mr_accuracy"):
                cells.append(_accuracy_cell(row, key))
            else:
                cells.append(_cell(row.get(key), style))
        lines.append(f"| {rank} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def leaderboard_markdown(result: BenchmarkResult, board: pd.DataFrame) -> str:
    suite = result.suite
    lines = [f"# Leaderboard: {suite.name}", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += [f"- Machine: {describe_machine(result.records)}",
              f"- Seeds per row: {suite.seeds} ({VARY_MEANING[suite.vary]}); accuracy in %, mean ± std over seeds.",
              f"- Test set: {describe_test_set(result.records)}. MR: Pang & Lee sentence polarity, out of domain.",
              f"- Command: `{result.command or 'imdb-sentiment benchmark'}`; written {now_utc()}.", ""]  # fmt: skip
    lines.append(leaderboard_table(main_rows(board)) if not board.empty else "No run has completed yet.")
    curves = learning_curve_table(board)
    if curves:
        lines += ["", "## Learning curves (test accuracy %, mean ± std over seeds)", "", curves]
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


def describe_machine(records: list[RunRecord]) -> str:
    info = machine_info()
    loads = []
    for record in records:
        environment = _read_optional_json(record.planned.run_dir / "environment.json") or {}
        if environment.get("load_average"):
            loads.append(environment["load_average"][0])
    load = f"; 1-min load at run starts {min(loads):.2f}–{max(loads):.2f}" if loads else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']} ({info['cpu_count']} cores){gpu}{load}"


def describe_test_set(records: list[RunRecord]) -> str:
    sizes = sorted({record.metrics.get("examples") for record in records if record.metrics.get("examples")})
    full = all(record.metrics.get("full_test_set", True) for record in records if record.metrics)
    if not sizes:
        return "–"
    what = "the full test split" if full else "a stratified test SAMPLE (test_limit), not the full test set"
    return f"{what}, {', '.join(f'{size:,}' for size in sizes)} reviews"


def _read_optional_json(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path) if path.is_file() else None
    except UserError:
        return None


def previous_state(planned: PlannedRun) -> str:
    """What a run folder left by an earlier benchmark holds: absent, completed, resumable or stale."""
    folder = planned.run_dir
    if not folder.exists():
        return "absent"
    written = folder / "config.yaml"
    if written.is_file() and written.read_text(encoding="utf-8") != dump_config(planned.config):
        return "different-config"
    status = read_status(folder).get("status")
    if status == "completed" and (folder / "metrics.json").is_file() and (folder / "model").is_dir():
        return "completed"
    checkpoints = folder / "checkpoints"
    if status in ("interrupted", "failed", "running") and checkpoints.is_dir() and any(checkpoints.glob("*.pt")):
        return "resumable"
    return "stale"


def run_planned(
    planned: PlannedRun,
    data_cache: dict[str, PreparedData],
    ood_path: Path | None,
    detect_ood: bool,
    show_progress: bool,
    command: str,
) -> RunRecord:
    state = previous_state(planned)
    if state == "different-config":
        return RunRecord(planned, "failed", error=f"{planned.run_dir} holds a run with another config; remove it "
                                                  "or pass another --output-dir")  # fmt: skip
    if state == "completed":
        logger.info("benchmark: %s completed before; reusing it", planned.run_dir.name)
        if not (planned.run_dir / "analysis" / "analysis.json").is_file():
            _analyze(planned, ood_path, _data(planned, data_cache), None, detect_ood)
        return RunRecord(planned, "reused", metrics=read_json(planned.run_dir / "metrics.json"))
    if state == "stale":  # nothing to resume from: keep the evidence, start again beside it
        aside = planned.run_dir.with_name(f"{planned.run_dir.name}.abandoned-{datetime.now():%Y%m%d-%H%M%S}")
        os.replace(planned.run_dir, aside)
        logger.warning(
            "benchmark: %s had not completed and cannot resume; moved to %s", planned.run_dir.name, aside
        )
    data = _data(planned, data_cache)
    logger.info("benchmark: %s %s", "resuming" if state == "resumable" else "training", planned.run_dir.name)
    result = run_experiment(
        planned.config,
        data=data,
        resume_dir=planned.run_dir if state == "resumable" else None,
        run_dir=planned.run_dir if state != "resumable" else None,
        show_progress=show_progress,
        command=command,
    )
    _analyze(planned, ood_path, data, result.model, detect_ood)
    return RunRecord(planned, "completed", metrics=result.metrics)


def _analyze(planned: PlannedRun, ood_path: Path | None, data: PreparedData, model: Any, detect_ood: bool) -> None:
    """The run's error analysis; a failure here is logged, never turns a completed run into a failed one."""
    try:
        analyze_run(planned.run_dir, ood_path, data=data, model=model, detect_ood=detect_ood)
    except Exception as exc:  # the run itself is complete and on the leaderboard either way
        logger.warning("benchmark: analysis of %s failed: %s", planned.run_dir.name, exc)


def _data(planned: PlannedRun, cache: dict[str, PreparedData]) -> PreparedData:
    key = json.dumps(planned.config.data.model_dump(mode="json"), sort_keys=True)
    if key not in cache:
        cache[key] = load_data(planned.config.data)
    return cache[key]


def gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def run_benchmark(
    suite: Suite,
    overrides: list[str],
    output_dir: Path,
    include_gpu_rows: bool = False,
    ood_path: Path | None = None,
    detect_ood: bool = True,
    show_progress: bool = True,
    command: str = "",
) -> tuple[BenchmarkResult, list[Path]]:
    planned, skipped = expand_suite(suite, overrides, output_dir, include_gpu_rows, gpu_available())
    if ood_path is not None and not (ood_path / "rt-polarity.pos").is_file():
        raise UserError(f"--ood-data {ood_path}: no rt-polarity.pos there; point it at the MR folder.")
    ensure_writable_dir(output_dir)
    write_json_atomic(output_dir / "suite.json", {"suite": suite.model_dump(mode="json"), "overrides": overrides,
                                                  "command": command, "started": now_utc()})  # fmt: skip
    result = BenchmarkResult(suite, output_dir, [], skipped, command)
    data_cache: dict[str, PreparedData] = {}
    logger.info("benchmark %s: %d runs planned, %d rows skipped", suite.name, len(planned), len(skipped))
    for run in planned:
        try:
            record = run_planned(run, data_cache, ood_path, detect_ood, show_progress, command)
        except KeyboardInterrupt:
            result.write()  # what finished so far stays on the leaderboard
            raise RunInterrupted(
                output_dir, f"the same benchmark command (completed runs in {output_dir} are kept and skipped)"
            ) from None
        except RunPreempted as preempted:  # SIGTERM: the whole job is being stopped, not this row
            result.write()
            raise RunPreempted(output_dir, preempted.step, "the same benchmark command (the stopped run "
                               f"continues from its checkpoint: {preempted.run_dir})") from None  # fmt: skip
        except Exception as exc:  # one broken run must not lose the others' results
            message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            logger.error("benchmark: %s failed: %s", run.run_dir.name, message)
            record = RunRecord(run, "failed", error=message.splitlines()[0] if message else type(exc).__name__)
        result.records.append(record)
        result.write_tables()  # keep the leaderboard current after every run
    return result, result.write()
