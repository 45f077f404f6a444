"""One experiment end to end: data -> model (from the registry) -> fit -> test evaluation -> run folder.

This is the single pipeline behind ``train``, ``benchmark`` (learning curves included) and ``tune``'s trials.

Under a launcher (``torchrun``, ``accelerate launch``) every process runs it: all of them load the
data, fit (DistributedDataParallel) and predict their share of the test set; only the main process
(rank 0) creates and writes the run folder, and the others learn its path from it. SIGTERM at any stage
ends in :class:`RunPreempted` (exit code 143; during a fit on a training backend, after a resume
checkpoint), Ctrl-C in :class:`RunInterrupted` (exit code 130): see training/preemption.py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from imdb_sentiment.config import ExperimentConfig, dump_config
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.data.splits import PreparedData, load_data
from imdb_sentiment.errors import RunInterrupted, RunPreempted, UserError
from imdb_sentiment.evaluation.metrics import (
    accuracy_interval,
    evaluate_model,
    reliability_bins,
    single_review_latency,
)
from imdb_sentiment.evaluation.plots import (
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_roc_curve,
    plot_training_curves,
)
from imdb_sentiment.evaluation.predictions import predictions_frame
from imdb_sentiment.evaluation.resources import PeakMemory, gpu_peak_mb, process_peak_mb, reset_gpu_peak
from imdb_sentiment.io_utils import atomic_path, write_json_atomic, write_text_atomic
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.runs import (
    create_run_dir,
    environment_record,
    now_utc,
    read_status,
    save_model_atomically,
    write_status,
)
from imdb_sentiment.training import distributed, preemption
from imdb_sentiment.training.backends import check_backend_runtime
from imdb_sentiment.training.preemption import TrainingStopped, stop_on_sigterm

logger = logging.getLogger("imdb_sentiment")


@dataclass
class ExperimentResult:
    run_dir: Path
    metrics: dict[str, Any]
    model: SentimentModel
    main_process: bool = True  # False on the other ranks of a distributed run: they wrote nothing


def attach_log_file(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("imdb_sentiment")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def write_predictions(
    path: Path, ids: list[str], labels: np.ndarray, probabilities: np.ndarray, classes: LabelSpace
) -> None:
    frame = predictions_frame(ids, labels, probabilities, classes)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def run_experiment(
    config: ExperimentConfig,
    data: PreparedData | None = None,
    resume_dir: Path | None = None,
    show_progress: bool = True,
    command: str = "",
    run_dir: Path | None = None,
    score_on: Literal["test", "validation"] = "test",
    callbacks: Sequence[Any] = (),
) -> ExperimentResult:
    """``run_dir``: write into this (new, empty or absent) folder instead of a time-stamped one under
    ``config.output_dir``; the benchmark uses it so a re-run finds its rows again. ``score_on="validation"``
    (a tune trial): the run is scored, and its predictions written, on the validation split; the test
    split is never predicted. ``callbacks``: given to the training loop (a trial's pruning)."""
    # Load and validate the data before anything is written: bad input never leaves a run folder.
    data = data or load_data(config.data)
    if score_on == "validation":
        data = replace(data, test=data.valid, full_test_set=False)
    model_class = get_model_class(config.model.name)
    model = model_class(config.model.params)
    model.check_classes(data.classes)  # settings that need the data's classes, before a run folder
    runtime = None
    if not model_class.capabilities.trains_with_loop and distributed.launcher_ranks()[1] > 1:
        raise UserError(f"model.name: {config.model.name!r} trains in one process; run it without torchrun.")
    if model_class.capabilities.needs_torch_runtime:  # resolved once here; nothing below decides the device
        from imdb_sentiment.training.runtime import Runtime

        runtime = Runtime.from_training(config.training).apply()  # joins a launcher's process group
        check_backend_runtime(config.training, runtime)  # the backend's own checks of this machine

    if runtime is not None and not runtime.is_main_process:
        run_dir = Path(distributed.from_main_process(None))
        return _follow_main_process(config, data, model, runtime, run_dir, resume_dir is not None)
    if resume_dir is not None:
        run_dir = resume_dir
    elif run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = create_run_dir(config.output_dir, config.run_name)
    distributed.from_main_process(str(run_dir))
    handler = attach_log_file(run_dir)
    signals = contextlib.ExitStack()
    signals.enter_context(stop_on_sigterm())  # SIGTERM from here on: "preempted", at any stage
    try:
        write_text_atomic(run_dir / "config.yaml", dump_config(config))
        write_json_atomic(run_dir / "environment.json", environment_record(config.seed, config.data.seed))
        write_json_atomic(run_dir / "data.json", data.summary())
        processes = {"processes": runtime.world_size} if runtime is not None and runtime.world_size > 1 else {}
        if resume_dir is None:
            write_status(run_dir, "running", started=now_utc(), command=command, model=config.model.name,
                         **processes)  # fmt: skip
        else:  # the first start time stays; each resume is added to the record
            resumes = read_status(run_dir).get("resumed", [])
            write_status(run_dir, "running", resumed=[*resumes, now_utc()], resume_command=command)
        logger.info("run %s: model %s, train %d / valid %d / test %d", run_dir, config.model.name,
                    len(data.train), len(data.valid), len(data.test))  # fmt: skip
        context = _fit_context(config, data, runtime, run_dir, resume_dir is not None, show_progress)
        context.callbacks.extend(callbacks)
        reset_gpu_peak()
        with PeakMemory() as peak:
            train_seconds, metrics, probabilities = _fit_and_test(model, data, context, config)
        metrics.update(single_review_latency(model, data.test.texts))
        metrics.update(
            {
                "model": config.model.name,
                "run_name": config.run_name,
                "split": score_on,
                "train_seconds": train_seconds,
                "train_examples": model.train_examples_used(len(data.train)),
                "parameters": model.num_parameters(),
                "trainable_parameters": model.num_trainable_parameters(),
                "trainable_share": model.num_trainable_parameters() / max(model.num_parameters(), 1),
                "peak_memory_mb": peak.mb,  # this run's training + test evaluation
                "process_peak_memory_mb": process_peak_mb(),
                "device": model.device_used(),  # an ensemble's members, an LLM scorer's GPU: what computed
                "seed": config.seed,
                "data_seed": config.data.seed,
                "full_test_set": data.full_test_set,  # what was used: a test_limit above the test size is all of it
                "validation": {k: v for k, v in context.extra_metrics.items() if k.startswith("valid")},
                "details": {k: v for k, v in context.extra_metrics.items() if not k.startswith("valid")},
            }
        )
        if not data.full_test_set:  # a sample: how far its accuracy may be from the full test set's
            low, high = accuracy_interval(metrics["accuracy"], metrics["examples"])
            metrics.update({"accuracy_ci95_low": low, "accuracy_ci95_high": high})
        if (gpu_peak := gpu_peak_mb()) is not None:
            metrics["peak_gpu_memory_mb"] = gpu_peak
        write_predictions(
            run_dir / "predictions.csv", data.test.ids, data.test.labels, probabilities, model.classes
        )
        if context.history:
            with atomic_path(run_dir / "history.csv") as tmp:
                pd.DataFrame(context.history).to_csv(tmp, index=False)
        save_model_atomically(model, run_dir)
        metrics["model_size_mb"] = _folder_size_mb(run_dir / "model")
        metrics.update(model.saved_sizes(run_dir / "model"))
        write_json_atomic(run_dir / "metrics.json", metrics)
        preemption.stage("plotting")
        _write_plots(run_dir, metrics, data.test.labels, probabilities, context.history, config.run_name,
                     model.classes)  # fmt: skip
        write_status(run_dir, "completed", finished=now_utc(), accuracy=metrics["accuracy"])
        logger.info("%s accuracy %.4f (%d reviews)", score_on, metrics["accuracy"], metrics["examples"])
        return ExperimentResult(run_dir=run_dir, metrics=metrics, model=model)
    except KeyboardInterrupt:
        _record_end(run_dir, "interrupted")
        raise RunInterrupted(run_dir) from None
    except TrainingStopped as stopped:
        _record_end(
            run_dir,
            "preempted",
            **({"step": stopped.step} if stopped.step is not None else {"stage": stopped.stage}),
        )
        raise RunPreempted(run_dir, stopped.step, stage=stopped.stage, agreed=stopped.agreed) from None
    except BaseException as exc:
        _record_end(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        signals.close()
        logging.getLogger("imdb_sentiment").removeHandler(handler)
        handler.close()


def _fit_context(config: ExperimentConfig, data: PreparedData, runtime: Any, run_dir: Path, resume: bool,
                 show_progress: bool) -> FitContext:  # fmt: skip
    return FitContext(training=config.training, seed=config.seed, runtime=runtime, run_dir=run_dir,
                      unsup=data.unsup, resume=resume, show_progress=show_progress)  # fmt: skip


def _fit_and_test(model: SentimentModel, data: PreparedData, context: FitContext, config: ExperimentConfig
                  ) -> tuple[float, dict[str, Any], np.ndarray]:  # fmt: skip
    """Fit, then predict the test set: (train seconds, test metrics, probabilities). SIGTERM during the
    fit ends it at the next step with a checkpoint (TrainingStopped). Every rank runs this, and
    ``single_review_latency`` after it: the predictions are gathered across ranks."""
    started = time.perf_counter()
    preemption.stage("training")
    model.fit(data.train, data.valid, context)
    # A resumed fit adds the training time its checkpoint recorded before the interruption.
    train_seconds = time.perf_counter() - started + context.extra_metrics.get("earlier_train_seconds", 0.0)
    logger.info("trained in %.1f s", train_seconds)
    preemption.stage("the test evaluation")
    metrics, probabilities = evaluate_model(
        model, data.test.texts, data.test.labels, config.training.eval_batch_size
    )
    metrics.update(model.prediction_metrics(data.test.texts, data.test.labels, probabilities))
    preemption.stage("saving the run")
    return train_seconds, metrics, probabilities


def _follow_main_process(config: ExperimentConfig, data: PreparedData, model: SentimentModel, runtime: Any,
                         run_dir: Path, resume: bool) -> ExperimentResult:  # fmt: skip
    """A rank besides 0: the same fit and test predictions (their collectives need every rank), reading
    the run folder's checkpoints on resume but writing nothing; its log says warnings only."""
    logging.getLogger("imdb_sentiment").setLevel(logging.WARNING)
    context = _fit_context(config, data, runtime, run_dir, resume, show_progress=False)
    try:
        with stop_on_sigterm():
            _, metrics, _ = _fit_and_test(model, data, context, config)
            metrics.update(single_review_latency(model, data.test.texts))
    except TrainingStopped as stopped:
        raise RunPreempted(run_dir, stopped.step, stage=stopped.stage, agreed=stopped.agreed) from None
    return ExperimentResult(run_dir=run_dir, metrics=metrics, model=model, main_process=False)


def _record_end(run_dir: Path, status: str, **extra: Any) -> None:
    """Best effort: with the disk full, say so in the log rather than chain a second traceback."""
    try:
        write_status(run_dir, status, finished=now_utc(), **extra)
    except (OSError, UserError) as exc:
        logger.error("could not record status %r in %s: %s", status, run_dir / "run.json", exc)


def _folder_size_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def _write_plots(run_dir: Path, metrics: dict[str, Any], labels: np.ndarray, probabilities: np.ndarray,
                 history: list[dict[str, float]], title: str, classes: LabelSpace) -> None:  # fmt: skip
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    plot_confusion_matrix(metrics["confusion_matrix"], plots / "confusion_matrix.png", title, classes.names)
    if classes.size == 2:  # one curve; K classes have K one-vs-rest curves, summarised by roc_auc
        plot_roc_curve(labels, probabilities[:, 1], plots / "roc_curve.png", title)
    plot_training_curves(history, plots / "training_curves.png", title)
    plot_reliability_diagram(
        reliability_bins(labels, probabilities), plots / "reliability.png", title, classes.size
    )
