"""``scripts/bad_inputs.sh``: every known bad input through the real CLI (about a minute on an idle
2-core machine; deselect with ``-k 'not bad_inputs_script'`` when iterating).

The cases another test already runs through the real process, with stricter checks, are skipped here
(the script still runs them for a user; ``BAD_INPUTS_SKIP``): each is named with that test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bad_inputs.sh"
COVERED_ELSEWHERE = {  # case name -> the test that runs the same command through the real process
    "unwritable output dir (/proc)": "test_io_utils.py::test_cli_train_into_proc",
    "--kaggle-submission /proc/x.csv": "test_io_utils.py::test_cli_kaggle_submission_under_proc",
    "predict --batch-size 0": "test_cli_inputs.py::test_out_of_range_numbers_are_usage_errors",
    "training.device=cuda (no GPU)": "test_config_resolution.py::test_unavailable_device_is_refused_before_a_run_folder_exists",
    "old-format linear run": "models/test_linear.py::test_cli_predict_refuses_an_old_pickled_run",
    "ONNX graph of garbage bytes": "serving/test_onnx.py::test_a_graph_that_cannot_be_loaded_is_one_line",
    "ONNX external data out of folder": "serving/test_onnx.py::test_a_graph_that_cannot_be_loaded_is_one_line",
    "crafted pickle network.pt": "serving/test_onnx.py::test_crafted_pickles_in_weight_files_are_refused_in_one_line",
    "YAML alias bomb (training.epochs)": "test_config_configure.py::test_a_yaml_alias_bomb_is_refused_quickly_in_one_line",
    "YAML alias bomb (name), show-config": "test_config_configure.py::test_a_yaml_alias_bomb_is_refused_quickly_in_one_line",
}  # fmt: skip


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bad_inputs_script_passes() -> None:
    env = {**os.environ, "IMDB_SENTIMENT": str(Path(sys.executable).with_name("imdb-sentiment")),
           "BAD_INPUTS_SKIP": "\n".join(COVERED_ELSEWHERE)}  # fmt: skip
    result = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "bad_inputs.sh: all" in result.stdout and "crafted pickle checkpoint" in result.stdout
    rows = [line for line in result.stdout.splitlines() if " | " in line][1:]
    assert len(rows) >= 25 and not any("TRACEBACK" in row or "!=" in row for row in rows), report
    skipped = {row.split(" | ")[0].strip() for row in rows if row.rstrip().endswith("| skipped")}
    if "training.device=cuda (skipped: GPU)" in skipped:  # on a GPU machine the script has no such case
        skipped.add("training.device=cuda (no GPU)")
    assert set(COVERED_ELSEWHERE) <= skipped, report  # each name still names a case of the script
    for test in set(COVERED_ELSEWHERE.values()):  # and each covering test still exists
        file, name = test.split("::")
        assert f"def {name}(" in (REPO / "tests" / file).read_text(), test
