"""Hyper-parameter search on the validation split (Optuna), each trial a normal run of the one pipeline.

The driver asks Optuna for a trial, samples the search space (pipelines/search_space.py), and runs the
trial's config through :func:`~imdb_sentiment.pipelines.experiment.run_experiment` with
``score_on="validation"``: a run folder under ``<out>/trials/`` scored on the validation split, the test
split never predicted. Loop-trained models report their per-epoch validation accuracy to Optuna's
pruner through a training-loop callback, which stops a trial that lags. Trials run here one after
another or as Ray tasks (pipelines/executors.py); TPE sees every finished trial before the next is
asked (at most ``executor.slots`` are in flight).

The study lives in an Optuna storage (SQLite ``<out>/study.db`` by default; any Optuna URL, e.g.
PostgreSQL, lets many machines add trials to one study). ``trials`` is the study's total of finished
trials: re-running the same command after Ctrl-C finishes the rest, and a trial Ctrl-C stopped is asked
again with the same parameters, its run folder resuming from its checkpoint. At the end the best
trial's config is written as ``best.yaml`` (``train best.yaml`` runs it as is) and the best trial, and
only it, is evaluated on the test split (once: a re-run with the same best trial reuses the result).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil

from imdb_sentiment.config import ExperimentConfig, read_yaml
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.data.splits import PreparedData, load_data
from imdb_sentiment.errors import RunInterrupted, UserError
from imdb_sentiment.evaluation.metrics import evaluate_model
from imdb_sentiment.io_utils import ensure_writable_dir, write_json_atomic, write_text_atomic
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.pipelines.benchmark import decide
from imdb_sentiment.pipelines.executors import LocalExecutor, task_resources
from imdb_sentiment.pipelines.experiment import run_experiment
from imdb_sentiment.pipelines.search_space import (
    CategoricalParam,
    FloatParam,
    SearchSpace,
    TuneFile,
    check_space,
    conditions_hold,
    config_value,
    hand_set_values,
    metric_problem,
)
from imdb_sentiment.runs import read_json, write_status
from imdb_sentiment.training.loop import Callback

logger = logging.getLogger("imdb_sentiment.tune")
OPTUNA_INSTALL = 'Optuna is not installed; install it with: pip install "imdb-sentiment[tune]"'
FINISHED = ("COMPLETE", "PRUNED")


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError(OPTUNA_INSTALL) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class PruneOnValidation(Callback):
    """Reports each epoch's validation accuracy to the trial; raises ``optuna.TrialPruned`` (ending the
    fit, and the run as "pruned") when the pruner says the trial lags. ``*args``: the loop's hook passes
    (epoch, logs) today, (state, control, logs) with TrainerControl-style callbacks; logs come last."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_epoch_end(self, trainer: Any, *args: Any) -> None:
        logs = args[-1]
        if "valid_accuracy" not in logs:
            return
        epoch = int(logs["epoch"])
        self.trial.report(float(logs["valid_accuracy"]), epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(
                f"pruned after epoch {epoch}: validation accuracy {logs['valid_accuracy']:.4f}"
            )


def run_trial(config: ExperimentConfig, run_dir: Path, storage: str, study_name: str, trial_id: int,
              space: SearchSpace, data: PreparedData | None) -> dict[str, Any]:  # fmt: skip
    """One trial, here or on a Ray worker: the run folder's state decides a fresh start, a resume from
    its checkpoint (a retried task, a trial Ctrl-C stopped) or reuse; returns the validation scores."""
    optuna = import_optuna()
    decision = decide(SimpleNamespace(run_dir=run_dir, config=config))  # type: ignore[arg-type]
    if decision.state == "different-config":
        raise UserError(f"{run_dir} holds a run with another config; remove it or pass another --output-dir")
    if decision.state == "completed":
        metrics = read_json(run_dir / "metrics.json")
    else:
        callbacks = []
        if space.pruner != "none":  # the study as the driver opened it: its pruner decides
            study = optuna.load_study(study_name=study_name, storage=storage, pruner=make_pruner(space))
            trial = optuna.trial.Trial(study, trial_id)
            callbacks.append(PruneOnValidation(trial))
        resume = decision.state == "resumable"
        try:
            metrics = run_experiment(config, data=data, resume_dir=run_dir if resume else None,
                                     run_dir=None if resume else run_dir, show_progress=False,
                                     command="imdb-sentiment tune", score_on="validation",
                                     callbacks=callbacks).metrics  # fmt: skip
        except optuna.TrialPruned as pruned:
            write_status(run_dir, "pruned", reason=str(pruned))
            raise
    if metrics.get(space.metric) is None:  # a task the driver could not check (data read on a worker)
        raise UserError(metric_problem(space.metric, LabelSpace.from_json(read_json(run_dir / "data.json").get("classes")))
                        or f"search.metric: the trial recorded no validation {space.metric}.")  # fmt: skip
    keys = dict.fromkeys(
        ("accuracy", "f1" if "f1" in metrics else "macro_f1", "roc_auc", space.metric, "train_seconds")
    )
    return {
        "value": metrics[space.metric],
        "run_dir": str(run_dir),
        "metrics": {key: metrics.get(key) for key in keys},
    }


def sample(trial: Any, space: SearchSpace, resolved: dict[str, Any]) -> dict[str, Any]:
    """The trial's values, in declaration order; a parameter whose ``when`` fails is left out."""
    values: dict[str, Any] = {}
    for path, spec in space.params.items():
        known = {condition: values.get(condition, config_value(resolved, condition)) for condition in spec.when}
        if not conditions_hold(spec, known):
            continue
        if isinstance(spec, FloatParam):
            values[path] = trial.suggest_float(path, spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, CategoricalParam):
            values[path] = trial.suggest_categorical(path, spec.choices)
        else:
            values[path] = trial.suggest_int(path, spec.low, spec.high, step=spec.step, log=spec.log)
    return values


@dataclass
class TuneResult:
    output_dir: Path
    study: Any
    best: dict[str, Any] | None = None  # number, value, params, run_dir, best.yaml, test metrics
    hand_set: dict[str, Any] | None = None  # the written config's trial: number, value, run_dir, sampled
    files: list[Path] = field(default_factory=list)


def open_study(tune: TuneFile, overrides: list[str], storage: str, study_name: str) -> Any:
    optuna = import_optuna()
    base = tune.trial_config({}, overrides)
    recipe = json.dumps({"space": tune.space.model_dump(mode="json"), "experiment": tune.raw,
                         "overrides": overrides}, sort_keys=True, default=str)  # fmt: skip
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        existing = None
    except Exception as exc:  # a bad URL, an unreachable database
        raise UserError(f"--storage {storage}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if existing is not None and existing.user_attrs.get("recipe", recipe) != recipe:
        raise UserError(f"study {study_name!r} in {storage} searched another space or config; pass another "
                        "--output-dir or --study-name.")  # fmt: skip
    done = len(existing.trials) if existing is not None else 0
    space = tune.space
    sampler = (optuna.samplers.TPESampler(seed=base.seed + done, n_startup_trials=space.startup_trials)
               if space.sampler == "tpe" else optuna.samplers.RandomSampler(seed=base.seed + done))  # fmt: skip
    study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=make_pruner(space),
                                direction="maximize", load_if_exists=True)  # fmt: skip
    study.set_user_attr("recipe", recipe)
    study.set_user_attr("metric", space.metric)
    if existing is None and (hand_set := hand_set_values(space, base.model_dump(mode="json"))):
        # Trial 0: the config as written; the names say which values it kept (the others are sampled).
        # skip_if_exists: machines starting one shared study together enqueue it once.
        study.enqueue_trial(hand_set, user_attrs={"hand_set": sorted(hand_set)}, skip_if_exists=True)
    _ask_interrupted_again(study)
    return study


def make_pruner(space: SearchSpace) -> Any:
    optuna = import_optuna()
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=space.startup_trials)
    return optuna.pruners.NopPruner()


def _ask_interrupted_again(study: Any) -> None:
    """A trial Ctrl-C stopped is asked again with its parameters; its folder resumes from the checkpoint.
    So is one whose driver died on this machine (killed, crashed): it is still "running" in the study."""
    import optuna

    again = set(study.user_attrs.get("asked_again", []))
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("driver", "")).rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("interrupted") and trial.number not in again:
            study.enqueue_trial(
                trial.params, user_attrs={"folder_of": trial.user_attrs.get("folder_of", trial.number)}
            )
            again.add(trial.number)
    study.set_user_attr("asked_again", sorted(again))


def finished_trials(study: Any) -> int:
    return sum(trial.state.name in FINISHED for trial in study.get_trials(deepcopy=False))


def run_tune(tune: TuneFile, output_dir: Path, overrides: list[str] | None = None, trials: int = 20,
             timeout: float | None = None, storage: str | None = None, study_name: str = "tune",
             executor: Any = None) -> TuneResult:  # fmt: skip
    overrides = overrides or []
    check_space(tune, overrides)  # every problem before a folder exists
    optuna = import_optuna()
    given_storage = storage is not None
    output_dir = output_dir.resolve()  # a Ray worker's working directory is not ours
    storage = storage or f"sqlite:///{output_dir / 'study.db'}"
    study = open_study(tune, overrides, storage, study_name) if given_storage else None  # a bad URL: no folder
    executor = executor or LocalExecutor()
    local = executor.name == "local"
    data_cache: dict[str, PreparedData] = {}
    if local:  # the data the trials share, read now: a metric the task lacks is one line before any folder
        classes = _data(tune.trial_config({}, overrides), data_cache).classes
        if problem := metric_problem(tune.space.metric, classes):
            raise UserError(problem)
    ensure_writable_dir(output_dir)
    study = study or open_study(tune, overrides, storage, study_name)
    resolved = tune.resolved(overrides)
    started = time.monotonic()
    pending: dict[Any, Any] = {}

    def budget_left() -> bool:
        in_time = timeout is None or time.monotonic() - started < timeout
        return in_time and finished_trials(study) + len(pending) < trials

    try:
        while True:
            while len(pending) < executor.slots and budget_left():
                trial = study.ask()
                trial.set_user_attr("driver", f"{socket.gethostname()}:{os.getpid()}")
                try:
                    config = tune.trial_config(sample(trial, tune.space, resolved), overrides)
                except UserError as exc:  # a combination the per-value check could not see
                    logger.warning("tune: trial %d: %s", trial.number, exc)
                    trial.set_user_attr("error", str(exc))
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    continue
                folder = output_dir / "trials" / f"trial-{trial.user_attrs.get('folder_of', trial.number):04d}"
                trial.set_user_attr("run_dir", str(folder))
                data = _data(config, data_cache) if local else None
                from imdb_sentiment.models.registry import get_model_class

                resources = task_resources(config, get_model_class(config.model.name).capabilities.needs_torch_runtime,
                                           executor.gpus_available())  # fmt: skip
                handle = executor.submit(run_trial, config, folder, storage, study.study_name, trial._trial_id,
                                         tune.space, data, **resources)  # fmt: skip
                pending[handle] = trial
            if not pending:
                break
            handle, outcome, error = executor.next_done(list(pending))
            _tell(study, pending.pop(handle), outcome, error, optuna)
    except KeyboardInterrupt:
        executor.cancel(list(pending))
        for trial in pending.values():
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        finish(study, output_dir, score_test=False)  # stopping: the test waits for a finished study
        raise RunInterrupted(output_dir, "the same tune command (the study continues where it stopped)") from None
    return finish(study, output_dir)


def _tell(
    study: Any, trial: Any, outcome: dict[str, Any] | None, error: BaseException | None, optuna: Any
) -> None:
    if isinstance(error, optuna.TrialPruned):
        logger.info("tune: trial %d pruned (%s)", trial.number, error)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif error is not None:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        logger.error("tune: trial %d failed: %s", trial.number, message)
        trial.set_user_attr("error", message)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        assert outcome is not None
        trial.set_user_attr("validation", outcome["metrics"])
        study.tell(trial, outcome["value"])
        logger.info(
            "tune: trial %d: validation %s %.4f", trial.number, study.user_attrs["metric"], outcome["value"]
        )


def _data(config: ExperimentConfig, cache: dict[str, PreparedData]) -> PreparedData:
    key = json.dumps(config.data.model_dump(mode="json"), sort_keys=True)
    if key not in cache:
        cache[key] = load_data(config.data)
    return cache[key]


def finish(study: Any, output_dir: Path, score_test: bool = True) -> TuneResult:
    """best.yaml, the best trial's one test evaluation, trials.csv and tune-report.html."""
    from imdb_sentiment.pipelines.tune_report import write_tune_report

    result = TuneResult(output_dir, study)
    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state.name == "COMPLETE"]
    result.hand_set = next(({"number": trial.number, "value": trial.value, "run_dir": trial.user_attrs["run_dir"],
                             "sampled": sorted(set(trial.params) - set(trial.user_attrs["hand_set"]))}
                            for trial in complete if trial.user_attrs.get("hand_set")), None)  # fmt: skip
    if complete:
        best = max(complete, key=lambda trial: (trial.value, -trial.number))
        run_dir = Path(best.user_attrs["run_dir"])
        best_yaml = output_dir / "best.yaml"
        write_text_atomic(best_yaml, (run_dir / "config.yaml").read_text(encoding="utf-8"))
        test = _test_once(study, best, run_dir) if score_test else None
        result.best = {"number": best.number, "value": best.value, "params": best.params,
                       "run_dir": str(run_dir), "config": str(best_yaml), "test": test}  # fmt: skip
        result.files.append(best_yaml)
    result.files += write_tune_report(study, output_dir, result.best, result.hand_set)
    return result


def _test_once(study: Any, best: Any, run_dir: Path) -> dict[str, Any]:
    """The test split, scored for the best trial only, and only the first time it is the best."""
    tested = study.user_attrs.get("test")
    if tested and tested.get("trial") == best.number:
        return tested
    config = configure(read_yaml(run_dir / "config.yaml"), for_training=False)
    model = SentimentModel.load(run_dir / "model")
    test = load_data(config.data).test
    metrics, _ = evaluate_model(model, test.texts, test.labels, config.training.eval_batch_size)
    metrics["split"] = "test"
    path = run_dir / "test_metrics.json"  # beside metrics.json, which holds the validation scores
    write_json_atomic(path, metrics)
    # Two classes: accuracy, F1 of class 1, ROC-AUC as ever; K classes: macro-F1 (and MAE, within-one if ordered).
    scores = (
        ("accuracy", "f1", "roc_auc")
        if "f1" in metrics
        else ("accuracy", "macro_f1", "roc_auc", "mae", "within_one")
    )
    tested = {"trial": best.number, **{key: metrics[key] for key in scores if key in metrics},
              "examples": metrics["examples"], "file": str(path)}  # fmt: skip
    study.set_user_attr("test", tested)
    logger.info("tune: best trial %d: test accuracy %.4f", best.number, metrics["accuracy"])
    return tested
