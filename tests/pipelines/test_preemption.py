"""Pre-emption with the real process: SIGTERM writes a checkpoint and exits 143 with the resume
command; SIGKILL loses at most the steps since the last step checkpoint. Either way ``--resume`` ends
with exactly the metrics and predictions of a run that was never stopped (tiny CNN, one thread)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import one_line_user_error, run_cli

from imdb_sentiment.config import dump_config
from imdb_sentiment.models.configure import configure, load_config
from imdb_sentiment.pipelines.experiment import run_experiment
from imdb_sentiment.runs import check_resumable

CLI = Path(sys.executable).with_name("imdb-sentiment")
SETTINGS = ["model.name=cnn", "model.params.embeddings=random", "model.params.embedding_dim=16",
            "model.params.num_filters=4", "model.params.max_length=24", "training.threads=1",
            "training.early_stopping_patience=null", "training.batch_size=4", "training.epochs=4",
            "training.checkpoint_every_steps=1"]  # fmt: skip


@pytest.fixture(scope="module")
def config_file(tiny_imdb_80, tmp_path_factory) -> Path:
    file = tmp_path_factory.mktemp("config") / "tiny-cnn.yaml"
    file.write_text(dump_config(configure({}, [f"data.path={json.dumps(str(tiny_imdb_80))}", *SETTINGS])))
    return file


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory) -> Path:
    """The same training, never stopped."""
    output = tmp_path_factory.mktemp("reference")
    config = load_config(str(config_file), [f"output_dir={json.dumps(str(output))}"])
    return run_experiment(config, show_progress=False).run_dir


def start(config_file: Path, runs: Path) -> subprocess.Popen:
    command = [str(CLI), "train", str(config_file), "--output-dir", str(runs), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_a_checkpoint(runs: Path) -> None:
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/checkpoints/last.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)


def assert_same_results(run_dir: Path, reference: Path) -> None:
    metrics, expected = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference))
    for key in ("accuracy", "f1", "roc_auc"):
        assert metrics[key] == expected[key], key
    assert metrics["details"]["optimizer_steps"] == expected["details"]["optimizer_steps"]
    assert (run_dir / "predictions.csv").read_bytes() == (reference / "predictions.csv").read_bytes()
    history, expected_history = (pd.read_csv(d / "history.csv").drop(columns="elapsed_seconds") for d in (run_dir, reference))  # fmt: skip
    pd.testing.assert_frame_equal(history, expected_history, check_exact=True)


def test_sigterm_and_sigkill_mid_epoch_then_resume_end_like_an_uninterrupted_run(
    config_file, reference, tmp_path, capsys
) -> None:
    terminated, killed = (
        start(config_file, tmp_path / "term"),
        start(config_file, tmp_path / "kill"),
    )  # side by side
    wait_for_a_checkpoint(tmp_path / "term")
    terminated.send_signal(signal.SIGTERM)
    wait_for_a_checkpoint(tmp_path / "kill")
    killed.kill()
    _, err = terminated.communicate(timeout=120)
    killed.communicate(timeout=60)

    assert terminated.returncode == 143, err
    assert "Traceback" not in err
    (run_dir,) = (tmp_path / "term").iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "preempted"
    assert err.strip().splitlines()[-1] == (
        f"stopped by SIGTERM after step {run['step']}; resume with: imdb-sentiment train --resume {run_dir}"
    )
    assert killed.returncode == -signal.SIGKILL
    (killed_dir,) = (tmp_path / "kill").iterdir()
    assert json.loads((killed_dir / "run.json").read_text())["status"] == "running"  # it had no say

    for stopped in (run_dir, killed_dir):
        code, _, err = run_cli(["train", "--resume", str(stopped), "--quiet"], capsys)
        assert code == 0, err
        assert json.loads((stopped / "run.json").read_text())["status"] == "completed"
        assert_same_results(stopped, reference)


def test_a_completed_run_is_replaced_only_with_overwrite(reference, capsys) -> None:
    one_line_user_error(lambda: check_resumable(reference, overwrite=False), "completed", "--overwrite")
    code, _, err = run_cli(["train", "--resume", str(reference), "--quiet"], capsys)
    assert code == 2 and "--overwrite" in err
    before = json.loads((reference / "metrics.json").read_text())
    code, _, err = run_cli(["train", "--resume", str(reference), "--overwrite", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((reference / "metrics.json").read_text())["accuracy"] == before["accuracy"]


# A stage patched to signal its own process as it starts: the signal arrives during that stage, every time.
DRIVER = """
import importlib, os, signal, sys
module_name, attribute, signal_name = sys.argv[1:4]
owner = importlib.import_module(module_name)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, name)
def signalled(*args, **kwargs):
    os.kill(os.getpid(), getattr(signal, signal_name))
    return original(*args, **kwargs)
setattr(owner, name, signalled)
sys.argv = ["imdb-sentiment", *sys.argv[4:]]
from imdb_sentiment.cli import main
main()
"""


@pytest.mark.parametrize(
    ("target", "signal_name", "status", "code", "last_line"),
    [
        ("imdb_sentiment.models.linear:LinearModel.fit", "SIGTERM", "preempted", 143, "stopped by SIGTERM during training"),
        ("imdb_sentiment.pipelines.experiment:evaluate_model", "SIGTERM", "preempted", 143,
         "stopped by SIGTERM during the test evaluation"),
        ("imdb_sentiment.pipelines.experiment:_write_plots", "SIGTERM", "preempted", 143,
         "stopped by SIGTERM during plotting"),
        ("imdb_sentiment.pipelines.experiment:evaluate_model", "SIGINT", "interrupted", 130, "interrupted"),
    ],
)  # fmt: skip
def test_a_signal_at_any_stage_ends_the_run_with_its_status_and_the_resume_line(
    tiny_imdb_80, tmp_path, capsys, target, signal_name, status, code, last_line
) -> None:
    """Before: SIGTERM in an nbsvm fit was swallowed (the run 'completed'), and in the test evaluation or
    the plots it killed the process with run.json left 'running'."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    runs = tmp_path / "runs"
    command = [sys.executable, str(driver), *target.split(":"), signal_name, "train", "nbsvm", "--data",
               str(tiny_imdb_80), "--output-dir", str(runs), "--quiet"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert finished.returncode == code, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == status
    assert (
        finished.stderr.strip().splitlines()[-1]
        == f"{last_line}; resume with: imdb-sentiment train --resume {run_dir}"
    )
    if target.endswith("LinearModel.fit"):  # and the resume line works
        code, _, err = run_cli(["train", "--resume", str(run_dir), "--quiet"], capsys)
        assert code == 0, err
        assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


def test_a_file_size_limit_on_a_checkpoint_is_one_line_and_the_run_is_marked_failed(config_file, tmp_path) -> None:
    """ulimit -f: torch.save's write comes up short ('unexpected pos 704 vs 598', a traceback before)."""
    import resource

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as a shell's ulimit -f with the signal ignored
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))  # run.json and config.yaml fit, no checkpoint does

    runs = tmp_path / "runs"
    command = [str(CLI), "train", str(config_file), "--output-dir", str(runs), "--quiet"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr and len(finished.stderr.strip().splitlines()) == 1
    assert "Cannot write a checkpoint" in finished.stderr and "ulimit -f" in finished.stderr
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_sigterm_while_llm_prompt_waits_for_its_server_ends_preempted(tmp_path) -> None:
    """The answers are awaited in asyncio; the signal used to be swallowed there (the run 'completed')."""
    from fake_openai import FakeOpenAI
    from helpers import write_tiny_parquet_imdb

    write_tiny_parquet_imdb(tmp_path / "data", size=24)
    runs = tmp_path / "runs"
    with FakeOpenAI(delay=30) as server:  # answers after the run should have ended
        command = [str(CLI), "train", "llm-prompt", "--data", str(tmp_path / "data"), "--test-limit", "4", "--quiet",
                   "--output-dir", str(runs), "--set", f"model.params.base_url={server.base_url}",
                   "--set", "model.params.model=fake", "--set", f"model.params.answer_cache={tmp_path / 'cache'}"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not list(runs.glob("*/run.json")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # the requests are out; whichever stage it is in now, the run must end preempted
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "preempted"
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM during "), err[:3000]
    assert "Traceback" not in err and "never retrieved" not in err, err[:3000]  # nothing printed after it


@pytest.mark.parametrize(
    ("target", "stage"),
    [("transformers:Trainer.train", "MLM pre-training"),
     ("transformers:PreTrainedModel.save_pretrained", "saving the model")],
)  # fmt: skip
def test_sigterm_during_pretrain_mlm_is_exit_143_in_one_line_and_leaves_no_output(
    tiny_imdb_80, tmp_path, target, stage
) -> None:
    """Before: pretrain-mlm had no SIGTERM scope (killed with a traceback), and a stop while saving left a
    half-written --output folder that the next run refused as "not empty"."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    output = tmp_path / "mlm"
    command = [sys.executable, str(driver), *target.split(":"), "SIGTERM", "pretrain-mlm", "--data", str(tiny_imdb_80),
               "--output", str(output), "--max-steps", "1", "--max-length", "16", "--hidden-size", "16",
               "--num-layers", "1", "--num-heads", "2", "--intermediate-size", "32", "--quiet"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 143, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines()[-1] == (
        f"stopped by SIGTERM during {stage}; nothing was written to {output} (pre-training keeps no checkpoint): "
        "run the same command again."
    )
    assert not output.exists() and not output.with_name("mlm.tmp").exists()


def test_sigterm_during_analyze_is_exit_143_in_one_line(tiny_imdb_80, tmp_path, capsys) -> None:
    """Before: analyze had no SIGTERM scope (the process died without a word)."""
    runs = tmp_path / "runs"
    code, _, err = run_cli(["train", "nbsvm", "--data", str(tiny_imdb_80), "--output-dir", str(runs), "--quiet"],
                           capsys)  # fmt: skip
    assert code == 0, err
    (run_dir,) = runs.iterdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    command = [sys.executable, str(driver), "imdb_sentiment.pipelines.analyze", "error_analysis", "SIGTERM",
               "analyze", str(run_dir)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 143, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines()[-1] == (
        f"stopped by SIGTERM; {run_dir / 'analysis'} holds no half-written file: run analyze again."
    )
    assert not any((run_dir / "analysis").glob("*")) if (run_dir / "analysis").exists() else True


@pytest.mark.parametrize(
    ("stopped", "meet"),
    [
        ({"step": 12}, True),  # after a step every rank agreed on
        ({"step": None, "stage": "the end of training", "agreed": True}, True),  # after the last step, agreed
        ({"step": None, "stage": "the test evaluation"}, False),  # one rank's own stop: no barrier to meet at
    ],
)
def test_ranks_that_agreed_to_stop_meet_before_leaving_even_after_the_last_step(
    stopped, meet, tmp_path, capsys, monkeypatch
) -> None:
    """A stop agreed after the last step (SIGTERM during the last validation) used to count as one rank's:
    the ranks skipped the teardown barrier, and one tearing gloo down while rank 0 still wrote run.json
    could abort it."""
    from imdb_sentiment.errors import RunPreempted
    from imdb_sentiment.pipelines import experiment
    from imdb_sentiment.training import distributed, preemption

    assert preemption.TrainingStopped(stage="the end of training", agreed=True).agreed
    assert not preemption.TrainingStopped(stage="the test evaluation").agreed
    left: list[bool] = []

    def stop(*args, **kwargs):
        raise RunPreempted(tmp_path, **stopped)

    monkeypatch.setattr(experiment, "run_experiment", stop)
    monkeypatch.setattr(distributed, "leave_process_group", left.append)
    code, _, _ = run_cli(["train", "nbsvm", "--quiet"], capsys)
    assert code == 143 and left == [meet]
