"""--executor ray on a local Ray instance (2 CPUs, so 2 worker processes): the same numbers as in turn, also
when a worker is killed mid-run (Ray retries the task, and the run resumes from its checkpoint)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from helpers import write_tiny_parquet_imdb

pytest.importorskip("ray")
pytest.importorskip("optuna")

from imdb_sentiment.pipelines.benchmark import run_benchmark
from imdb_sentiment.pipelines.executors import RayExecutor
from imdb_sentiment.pipelines.search_space import load_tune_file
from imdb_sentiment.pipelines.suites import Suite, SuiteRow
from imdb_sentiment.pipelines.tune import run_tune


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


@pytest.fixture(scope="module")
def tiny_imdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray-data") / "imdb"
    write_tiny_parquet_imdb(root, size=80)
    return root


def test_a_benchmark_on_ray_gives_the_sequential_numbers(ray_executor, tiny_imdb, tmp_path) -> None:
    assert ray_executor.slots == 2
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm")], out_of_domain=None)
    overrides = [f"data.path={json.dumps(str(tiny_imdb))}", "model.params.min_df=1", "data.limit=40"]
    on_ray, paths = run_benchmark(suite, overrides, tmp_path / "ray", show_progress=False, executor=ray_executor)
    in_turn, _ = run_benchmark(suite, overrides, tmp_path / "local", show_progress=False)
    assert [r.status for r in on_ray.records] == [r.status for r in in_turn.records] == ["completed"] * 2
    assert {path.name for path in paths} >= {"leaderboard.csv", "report.html"}
    numbers = ["accuracy_mean", "f1_mean", "roc_auc_mean", "ece_mean"]
    ray_board = pd.read_csv(tmp_path / "ray" / "leaderboard.csv").set_index("label")[numbers]
    local_board = pd.read_csv(tmp_path / "local" / "leaderboard.csv").set_index("label")[numbers]
    pd.testing.assert_frame_equal(ray_board, local_board)
    for run in ("tfidf-lr", "nbsvm"):
        ray_predictions = pd.read_csv(tmp_path / "ray" / run / "predictions.csv")
        assert ray_predictions.equals(pd.read_csv(tmp_path / "local" / run / "predictions.csv"))
    # Resumable exactly as in turn: the same command again reuses both runs.
    again, _ = run_benchmark(suite, overrides, tmp_path / "ray", show_progress=False, executor=ray_executor)
    assert [record.status for record in again.records] == ["reused", "reused"]


def test_tune_trials_run_as_ray_tasks(ray_executor, tiny_imdb, tmp_path) -> None:
    space = {"fixed": {"model.params.refit_on_train_and_valid": False, "model.params.min_df": 1},
             "params": {"model.params.C": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}}  # fmt: skip
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "tfidf-lr"}, "search": space}))
    overrides = [f"data.path={json.dumps(str(tiny_imdb))}"]
    result = run_tune(load_tune_file(str(path)), tmp_path / "out", overrides, trials=2, executor=ray_executor)
    assert [trial.state.name for trial in result.study.trials] == ["COMPLETE", "COMPLETE"]
    assert result.best is not None and (tmp_path / "out" / "best.yaml").is_file()
    assert len(list((tmp_path / "out" / "trials").glob("*/test_metrics.json"))) == 1


# A tiny CNN, one thread, two epochs, a resume point after every step: resuming it ends bit-identical to an
# uninterrupted run (tests/pipelines/test_preemption.py), so the retried task must give the same numbers.
TINY_CNN = ["model.params.embeddings=random", "model.params.embedding_dim=16", "model.params.num_filters=4",
            "model.params.max_length=24", "training.threads=1", "training.early_stopping_patience=null",
            "training.batch_size=4", "training.epochs=2", "training.checkpoint_every_steps=1"]  # fmt: skip


def kill_workers_after_a_checkpoint(runs: dict[str, Path], timeout: float = 120) -> dict[str, tuple[int, int]]:
    """SIGKILL the Ray worker running each task (its process title is ``ray::<task>``), as the OOM killer or a
    lost node would, once the task's run folder holds a resume checkpoint written after the first epoch (so
    the resume must carry that epoch's history on); returns the (epoch, step) each one saved. Each worker is
    stepped (SIGSTOP / SIGCONT) so that the kill lands while its run is still running."""
    import psutil
    import torch

    killed: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while len(killed) < len(runs) and time.monotonic() < deadline:
        for worker in psutil.Process().children(recursive=True):
            task = _title(worker).removeprefix("ray::")
            if task not in runs or task in killed:
                continue
            worker.suspend()
            last = runs[task] / "checkpoints" / "last.pt"
            saved = torch.load(last, weights_only=True) if last.is_file() else {"epoch": 0}
            if saved["epoch"] < 1:
                worker.resume()
                continue
            status = json.loads((runs[task] / "run.json").read_text())["status"]
            worker.kill()
            worker.wait(timeout=30)
            assert status == "running"  # killed mid-run, the folder as a lost worker leaves it
            killed[task] = saved["epoch"], saved["step"]
        time.sleep(0.01)
    assert killed.keys() == runs.keys(), f"no checkpoint after the first epoch from {set(runs) - set(killed)}"
    return killed


def _title(process: Any) -> str:
    try:
        return (process.cmdline() or [""])[0]
    except Exception:  # gone meanwhile, or not ours to read
        return ""


@pytest.fixture(scope="module")
def uninterrupted_cnn(tiny_imdb, tmp_path_factory) -> Path:
    """The tiny CNN benchmarked in turn in this process, never stopped: the numbers a killed worker must give."""
    output = tmp_path_factory.mktemp("uninterrupted")
    suite = Suite(name="t", rows=[SuiteRow(config="cnn")], out_of_domain=None)
    in_turn, _ = run_benchmark(
        suite, [f"data.path={json.dumps(str(tiny_imdb))}", *TINY_CNN], output, show_progress=False
    )
    assert [record.status for record in in_turn.records] == ["completed"]
    return output


def in_a_thread(function: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run the driver's side (it waits on Ray) beside the test, which meanwhile kills a worker."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = function()
        except BaseException as exc:  # raised again in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns="elapsed_seconds")


def assert_resumed_once_from(run_dir: Path, epoch: int, step: int) -> None:
    """Ray's retry found the folder 'running' with a checkpoint and resumed it, from that step, not from zero."""
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and len(run.get("resumed", [])) == 1
    assert step > 0 and f"resumed from epoch {epoch}, step {step} (" in (run_dir / "train.log").read_text()


def test_workers_killed_mid_run_are_retried_and_resume_from_their_checkpoints(
    ray_executor, tiny_imdb, uninterrupted_cnn, tmp_path
) -> None:
    """A benchmark run and a tune trial side by side, each worker killed mid-training. The tune space has one
    value: the trial's config is the benchmarked one, so its epochs must match the uninterrupted run's."""
    suite = Suite(name="t", rows=[SuiteRow(config="cnn")], out_of_domain=None)
    overrides = [f"data.path={json.dumps(str(tiny_imdb))}", *TINY_CNN]
    space = {"base": "cnn", "params": {"training.learning_rate": {"type": "categorical", "choices": [0.001]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"search": space}))
    tune = load_tune_file(str(tmp_path / "space.yaml"))
    bench_dir, trial_dir = tmp_path / "bench", tmp_path / "tune" / "trials" / "trial-0000"
    drivers = [in_a_thread(lambda: run_benchmark(suite, overrides, bench_dir, show_progress=False, executor=ray_executor)),
               in_a_thread(lambda: run_tune(tune, tmp_path / "tune", overrides, trials=1, executor=ray_executor))]  # fmt: skip
    try:
        killed = kill_workers_after_a_checkpoint({"run_planned": bench_dir / "cnn", "run_trial": trial_dir})
    finally:
        for thread, _ in drivers:
            thread.join(timeout=180)
    (_, benchmark), (_, tuning) = drivers
    assert "error" not in benchmark and "error" not in tuning, (benchmark.get("error"), tuning.get("error"))

    assert [record.status for record in benchmark["result"][0].records] == ["completed"]
    assert_resumed_once_from(bench_dir / "cnn", *killed["run_planned"])
    numbers = ["accuracy_mean", "f1_mean", "roc_auc_mean", "ece_mean"]
    boards = [pd.read_csv(folder / "leaderboard.csv").set_index("label")[numbers] for folder in (bench_dir, uninterrupted_cnn)]  # fmt: skip
    pd.testing.assert_frame_equal(*boards, check_exact=True)
    assert (bench_dir / "cnn" / "predictions.csv").read_bytes() == (uninterrupted_cnn / "cnn" / "predictions.csv").read_bytes()  # fmt: skip
    pd.testing.assert_frame_equal(history(bench_dir / "cnn"), history(uninterrupted_cnn / "cnn"), check_exact=True)

    assert [trial.state.name for trial in tuning["result"].study.trials] == ["COMPLETE"]
    assert_resumed_once_from(trial_dir, *killed["run_trial"])
    pd.testing.assert_frame_equal(history(trial_dir), history(uninterrupted_cnn / "cnn"), check_exact=True)
