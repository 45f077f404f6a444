"""Benchmark: run a suite (rows x seeds x training-set sizes): plan, decide each run's state, resume, run.

Every run of the suite is validated before the first one trains. Data is loaded once per distinct
data config. Each run gets an ordinary run folder with a fixed name under the output folder, so a
re-run skips the runs that completed (and resumes interrupted ones from their checkpoints); a row
that fails is reported and the others go on. After every run the tables (pipelines/leaderboard.py)
are rebuilt from the run folders, and at the end the HTML report (pipelines/report.py), so each
number traces back to a run.

Under a launcher (torchrun, accelerate launch) every process runs the suite, since training and
prediction are collective; rank 0 alone decides what each run folder holds (moves a stale one aside,
reuses or resumes) and tells the others, and rank 0 alone writes the tables and the report.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from imdb_sentiment.config import dump_config
from imdb_sentiment.data.splits import PreparedData, load_data
from imdb_sentiment.errors import RunInterrupted, RunPreempted, UserError
from imdb_sentiment.io_utils import ensure_writable_dir, write_json_atomic
from imdb_sentiment.pipelines.analyze import analyze_run, locate_out_of_domain
from imdb_sentiment.pipelines.experiment import run_experiment
from imdb_sentiment.pipelines.leaderboard import BenchmarkResult, RunRecord, write_tables
from imdb_sentiment.pipelines.report import write_report
from imdb_sentiment.pipelines.suites import PlannedRun, Suite, expand_suite
from imdb_sentiment.runs import now_utc, read_json, read_status
from imdb_sentiment.training import distributed

logger = logging.getLogger("imdb_sentiment.benchmark")
T = TypeVar("T")


def write_outputs(result: BenchmarkResult) -> list[Path]:
    """The tables and report.html (figures take seconds: written at the end or on interruption)."""
    board = result.leaderboard_frame()  # aggregated once for the tables and the report
    return [*write_tables(result, board), write_report(result, board)]


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


@dataclass(frozen=True)
class Decision:
    """What rank 0 found in a run's folder (and did about it), told to every rank."""

    state: str  # absent | completed | resumable | stale (moved aside) | different-config
    analysed: bool  # a completed run's analysis/analysis.json exists


def decide(planned: PlannedRun) -> Decision:
    """Rank 0 only: the run folder's state; a stale folder (nothing to resume from) is moved aside,
    keeping the evidence, so that the run starts again beside it."""
    state = previous_state(planned)
    if state == "stale":
        aside = planned.run_dir.with_name(f"{planned.run_dir.name}.abandoned-{datetime.now():%Y%m%d-%H%M%S}")
        os.replace(planned.run_dir, aside)
        logger.warning(
            "benchmark: %s had not completed and cannot resume; moved to %s", planned.run_dir.name, aside
        )
    elif state == "completed":
        logger.info("benchmark: %s completed before; reusing it", planned.run_dir.name)
    return Decision(state, (planned.run_dir / "analysis" / "analysis.json").is_file())


def decided_by_main(main: bool, choose: Callable[[], T]) -> T:
    """Rank 0's ``choose()`` on every rank (in one process: just ``choose()``). A failure on rank 0 is
    raised on every rank as a UserError, so no rank is left waiting for the others."""
    outcome: tuple[bool, Any] = (True, None)
    if main:
        try:
            outcome = (True, choose())
        except UserError as exc:
            outcome = (False, str(exc))
        except Exception as exc:  # told to the other ranks, then raised on every one
            outcome = (False, f"{type(exc).__name__}: {exc}")
    done, value = distributed.from_main_process(outcome)
    if not done:
        raise UserError(value)
    return value


def join_launcher(planned: list[PlannedRun]) -> bool:
    """Under a launcher, join its process group now, as the first run's runtime would, so that rank 0
    can tell the others its decisions before any run starts. True on the process that writes."""
    rank, world_size, _ = distributed.launcher_ranks()
    if world_size > 1 and planned:
        from imdb_sentiment.training.runtime import Runtime  # torch: only under a launcher

        Runtime.from_training(planned[0].config.training).apply()
    return rank == 0


def run_planned(
    planned: PlannedRun,
    data_cache: dict[str, PreparedData],
    suite: Suite,
    ood_path: Path | None,
    show_progress: bool,
    command: str,
    main: bool = True,
) -> RunRecord:
    decision = decided_by_main(main, lambda: decide(planned))
    if decision.state == "different-config":
        return RunRecord(planned, "failed", error=f"{planned.run_dir} holds a run with another config; remove it "
                                                  "or pass another --output-dir")  # fmt: skip
    if decision.state == "completed":
        if not decision.analysed:
            _analyze(planned, suite, ood_path, _data(planned, data_cache), None, main)
        metrics = read_json(planned.run_dir / "metrics.json") if main else {}
        return RunRecord(planned, "reused", metrics=metrics)
    data = _data(planned, data_cache)
    resume = decision.state == "resumable"
    logger.info("benchmark: %s %s", "resuming" if resume else "training", planned.run_dir.name)
    failure: Exception | None = None
    try:
        result = run_experiment(planned.config, data=data, resume_dir=planned.run_dir if resume else None,
                                run_dir=None if resume else planned.run_dir, show_progress=show_progress,
                                command=command)  # fmt: skip
    except Exception as exc:  # KeyboardInterrupt and RunPreempted stop the whole benchmark instead
        failure = exc
    # Every rank gets here once rank 0 has written the run (or failed): the analysis below reads its
    # files and predicts collectively, so it runs on every rank or on none.
    if distributed.any_rank(failure is not None):
        raise failure or UserError("the run failed on another process of the launcher")
    _analyze(planned, suite, ood_path, data, result.model, main)
    return RunRecord(planned, "completed", metrics=result.metrics)


def _analyze(planned: PlannedRun, suite: Suite, ood_path: Path | None, data: PreparedData, model: Any,
             main: bool) -> None:  # fmt: skip
    """The run's error analysis; a failure here is logged, never turns a completed run into a failed one."""
    try:
        analyze_run(planned.run_dir, ood_path, data=data, model=model, ood=suite.out_of_domain, write=main)
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
    show_progress: bool = True,
    command: str = "",
    executor: Any = None,
) -> tuple[BenchmarkResult, list[Path]]:
    """``ood_path`` (--ood-data): where the suite's out-of-domain set is, instead of its own path.
    ``executor``: a pipelines/executors.py RayExecutor runs each planned run as a Ray task (default: here,
    in turn). Returns the result and the files written (none on the ranks other than 0 under a launcher)."""
    planned, skipped = expand_suite(suite, overrides, output_dir, include_gpu_rows, gpu_available())
    locate_out_of_domain(suite.out_of_domain, None, ood_path)  # a set asked for and missing: stop now
    if executor is not None and executor.name != "local":
        return _run_on_executor(executor, suite, overrides, output_dir, planned, skipped, ood_path, command)
    main = join_launcher(planned)

    def prepare() -> None:
        ensure_writable_dir(output_dir)
        write_json_atomic(output_dir / "suite.json", {"suite": suite.model_dump(mode="json"), "overrides": overrides,
                                                      "command": command, "started": now_utc()})  # fmt: skip

    decided_by_main(main, prepare)
    result = BenchmarkResult(suite, output_dir, [], skipped, command, main_process=main)
    data_cache: dict[str, PreparedData] = {}
    logger.info("benchmark %s: %d runs planned, %d rows skipped", suite.name, len(planned), len(skipped))
    for run in planned:
        try:
            record = run_planned(run, data_cache, suite, ood_path, show_progress, command, main)
        except KeyboardInterrupt:
            if main:
                write_outputs(result)  # what finished so far stays on the leaderboard
            raise RunInterrupted(
                output_dir, f"the same benchmark command (completed runs in {output_dir} are kept and skipped)"
            ) from None
        except RunPreempted as preempted:  # SIGTERM: the whole job is being stopped, not this row
            if main:
                write_outputs(result)
            raise RunPreempted(output_dir, preempted.step, "the same benchmark command (the stopped run "
                               f"continues from its checkpoint: {preempted.run_dir})") from None  # fmt: skip
        except Exception as exc:  # one broken run must not lose the others' results
            message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            logger.error("benchmark: %s failed: %s", run.run_dir.name, message)
            record = RunRecord(run, "failed", error=message.splitlines()[0] if message else type(exc).__name__)
        result.records.append(record)
        if main:
            write_tables(result)  # keep the leaderboard current after every run
    return result, write_outputs(result) if main else []


def _run_on_executor(executor: Any, suite: Suite, overrides: list[str], output_dir: Path, planned: list[PlannedRun],
                     skipped: list[Any], ood_path: Path | None, command: str) -> tuple[BenchmarkResult, list[Path]]:  # fmt: skip
    """Every planned run a task (run_planned, on a worker: it decides the folder's state there, so a retried
    task resumes from the checkpoint); the driver writes the tables and report once, at the end."""
    from dataclasses import replace

    from imdb_sentiment.models.registry import get_model_class
    from imdb_sentiment.pipelines.executors import task_resources

    if distributed.launcher_ranks()[1] > 1:
        raise UserError("--executor ray runs the suite's runs as Ray tasks; start it without torchrun.")
    ensure_writable_dir(output_dir)
    write_json_atomic(output_dir / "suite.json", {"suite": suite.model_dump(mode="json"), "overrides": overrides,
                                                  "command": command, "started": now_utc()})  # fmt: skip
    result = BenchmarkResult(suite, output_dir, [], skipped, command)
    pending: dict[Any, PlannedRun] = {}
    for run in planned:  # absolute folders: a worker's working directory is not the driver's
        resources = task_resources(run.config, get_model_class(run.config.model.name).capabilities.needs_torch_runtime,
                                   executor.gpus_available())  # fmt: skip
        run = replace(run, run_dir=run.run_dir.resolve())
        pending[executor.submit(run_planned, run, {}, suite, ood_path, False, command, True, **resources)] = run
    records: dict[Path, RunRecord] = {}
    try:
        while pending:
            handle, record, error = executor.next_done(list(pending))
            run = pending.pop(handle)
            if error is not None:
                message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
                logger.error("benchmark: %s failed: %s", run.run_dir.name, message)
                record = RunRecord(
                    run, "failed", error=message.splitlines()[0] if message else type(error).__name__
                )
            records[run.run_dir] = record
    except KeyboardInterrupt:
        executor.cancel(list(pending))
        result.records = list(records.values())
        write_outputs(result)
        raise RunInterrupted(output_dir, f"the same benchmark command (completed runs in {output_dir} are kept "
                             "and skipped)") from None  # fmt: skip
    result.records = [records[run.run_dir.resolve()] for run in planned]  # the suite's order, as sequentially
    return result, write_outputs(result)
