"""Start-up of ``serve`` with the real process: a damaged run folder or a taken port is one line, exit 2."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_line_user_error, run_cli

from imdb_sentiment.runs import MANIFEST_FILE
from imdb_sentiment.serving.api import served_model_from_run
from imdb_sentiment.serving.predictor import Predictor

CLI = Path(sys.executable).with_name("imdb-sentiment")


def serve_fails(*args: str) -> str:
    """Run ``serve``; it must exit with 2 and one line on stderr (no traceback). Returns that line."""
    result = subprocess.run([str(CLI), "serve", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return " ".join(lines)


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained_run("nbsvm"), target)
    return target


def test_the_manifest_lists_every_model_file(trained_run) -> None:
    model_dir = trained_run("nbsvm") / "model"
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    saved = {p.name for p in model_dir.iterdir()} - {MANIFEST_FILE}
    assert set(manifest["files"]) == saved and all(len(digest) == 64 for digest in manifest["files"].values())


def test_a_missing_model_file_fails_at_start_up(run_copy) -> None:
    (run_copy / "model" / "coef.npy").unlink()
    assert "coef.npy is missing" in serve_fails(str(run_copy), "--port", "0")


def test_altered_or_absent_run_folders_are_one_line_errors(run_copy, tmp_path, capsys) -> None:
    """The same path in-process (each real process costs seconds of imports)."""
    shutil.copy2(run_copy / "model" / "intercept.npy", run_copy / "model" / "coef.npy")
    for folder, fragment in ((run_copy, "coef.npy was altered"), (tmp_path / "nowhere", "not a run folder")):
        code, _, err = run_cli(["serve", str(folder), "--port", "0"], capsys)
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_a_port_in_use_fails_at_start_up(trained_run, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(["serve", str(trained_run("nbsvm")), "--port", str(port)], capsys)
    assert code == 2 and f"Cannot listen on 127.0.0.1:{port}" in err


def test_altered_file_is_refused_in_process_too(run_copy) -> None:
    vocabulary = run_copy / "model" / "vocabulary.json"
    vocabulary.write_text(vocabulary.read_text().replace('"great"', '"grate"'))
    one_line_user_error(lambda: Predictor.from_run(run_copy), "vocabulary.json was altered")


def test_a_run_saved_before_manifests_still_loads_unchecked(run_copy) -> None:
    assert served_model_from_run(run_copy).files_checked
    (run_copy / "model" / MANIFEST_FILE).unlink()
    served = served_model_from_run(run_copy)  # serve prints a warning for this
    assert not served.files_checked
    assert served.predict_proba(["great film"]).shape == (1, 2)


def test_allowed_hosts_that_name_nothing_are_one_line_errors(trained_run, capsys) -> None:
    code, _, err = run_cli(["serve", str(trained_run("nbsvm")), "--port", "0", "--allowed-hosts", " , "], capsys)
    assert code == 2 and "--allowed-hosts names no host" in err and len(err.strip().splitlines()) == 1, err
