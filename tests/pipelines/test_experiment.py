"""The run pipeline under failure: a full disk, an interruption and its resume, Ctrl-C from the CLI."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

from imdb_sentiment.errors import RunInterrupted, UserError
from imdb_sentiment.models.configure import configure
from imdb_sentiment.pipelines.experiment import run_experiment
from imdb_sentiment.training.loop import Trainer

CLI = Path(sys.executable).with_name("imdb-sentiment")
TINY_CNN = ["model.name=cnn", "model.params.embeddings=random", "model.params.embedding_dim=16",
            "model.params.num_filters=4", "model.params.max_length=24", "training.threads=1",
            "training.early_stopping_patience=null"]  # fmt: skip


def config(tiny_imdb_80: Path, tmp_path: Path, *overrides: str):
    return configure({}, [f"data.path={json.dumps(str(tiny_imdb_80))}", f"output_dir={json.dumps(str(tmp_path))}",
                             *TINY_CNN, *overrides])  # fmt: skip


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def test_disk_full_while_saving_fails_cleanly(tiny_imdb_80, tmp_path, monkeypatch) -> None:
    from imdb_sentiment.models.word.cnn import CNNModel

    def no_space(self, directory):
        (directory / "partial.bin").write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CNNModel, "save_weights", no_space)
    with pytest.raises(UserError, match="Disk full while saving the model"):
        run_experiment(config(tiny_imdb_80, tmp_path, "training.epochs=1"), show_progress=False)
    (run_dir,) = tmp_path.iterdir()
    assert status(run_dir)["status"] == "failed"
    assert not (run_dir / "model.tmp").exists() and not (run_dir / "model").exists()
    assert not list(run_dir.rglob("*.tmp"))


def test_an_interrupted_run_resumes_and_keeps_its_totals(tiny_imdb_80, tmp_path, monkeypatch) -> None:
    original = Trainer._train_epoch
    epochs = {"n": 0}

    def interrupted_in_epoch_3(self, *args, **kwargs):
        epochs["n"] += 1
        if epochs["n"] == 3:
            raise KeyboardInterrupt
        time.sleep(0.3)  # measurable training time before the interruption
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted_in_epoch_3)
    with pytest.raises(RunInterrupted) as caught:
        run_experiment(config(tiny_imdb_80, tmp_path, "training.epochs=4"), show_progress=False)
    run_dir = Path(caught.value.run_dir)
    assert "imdb-sentiment train --resume" in caught.value.message
    first = status(run_dir)
    assert first["status"] == "interrupted"

    monkeypatch.setattr(Trainer, "_train_epoch", original)
    result = run_experiment(config(tiny_imdb_80, tmp_path, "training.epochs=4"), resume_dir=run_dir,
                            show_progress=False)  # fmt: skip
    final = status(run_dir)
    assert final["status"] == "completed"
    assert final["started"] == first["started"] and len(final["resumed"]) == 1
    earlier = result.metrics["details"]["earlier_train_seconds"]
    assert earlier >= 0.6  # the two epochs before the interruption
    assert result.metrics["train_seconds"] >= earlier
    assert [row["epoch"] for row in json_history(run_dir)] == [1, 2, 3, 4]


def json_history(run_dir: Path) -> list[dict]:
    import pandas as pd

    return pd.read_csv(run_dir / "history.csv").to_dict("records")


def test_ctrl_c_in_the_cli_says_how_to_resume(tiny_imdb_80, tmp_path, capsys) -> None:
    runs = tmp_path / "runs"
    sets = [item for setting in (*TINY_CNN[1:], "training.epochs=1000") for item in ("--set", setting)]
    command = [str(CLI), "train", "cnn", "--data", str(tiny_imdb_80), "--output-dir", str(runs), "--quiet", *sets]
    # A shell without job control starts background jobs (CI runners often do) with SIGINT ignored, and
    # Python keeps ignoring it; a user's terminal never does: give the child the default disposition.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    # last.pt, not its sidecar: the sidecar lists a new checkpoint's digest before the file is in place.
    while not list(runs.glob("*/checkpoints/last.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    (run_dir,) = runs.iterdir()
    assert err.strip().splitlines()[-1] == f"interrupted; resume with: imdb-sentiment train --resume {run_dir}"
    assert status(run_dir)["status"] == "interrupted"
    epochs_done = len(json_history_from_checkpoint(run_dir))
    # The resume in this process (the promise under test is the real process's Ctrl-C; a second start
    # would add seconds of imports).
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--quiet", "--set", f"training.epochs={epochs_done + 1}"],
                           capsys)  # fmt: skip
    assert code == 0, err
    assert status(run_dir)["status"] == "completed"


def json_history_from_checkpoint(run_dir: Path) -> list[dict]:
    import torch

    from imdb_sentiment.training.checkpoint import CheckpointStore

    state = CheckpointStore(run_dir / "checkpoints", torch.device("cpu")).load_resume_point()
    assert state is not None
    return state["history"]
