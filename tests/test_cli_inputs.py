"""Bad inputs through the real ``imdb-sentiment`` process: exit code 2, one clear line, no traceback.

A module-scoped tiny nbsvm run (trained in-process in about a second) serves every test; each test
then runs the installed console script with subprocess, as a user would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli, write_tiny_parquet_imdb

CLI = Path(sys.executable).with_name("imdb-sentiment")


class _NullCapture:
    def readouterr(self):
        class Captured:
            out = err = ""

        return Captured()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    write_tiny_parquet_imdb(root / "imdb")
    args = ["train", "nbsvm", "--data", str(root / "imdb"), "--output-dir", str(root / "runs"), "--quiet",
            "--set", "model.params.min_df=1", "--set", "model.params.max_features=null"]  # fmt: skip
    code, _, err = run_cli(args, _NullCapture())
    assert code == 0, err
    (run_dir,) = list((root / "runs").iterdir())
    return root, run_dir


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=120)


def assert_user_error(result: subprocess.CompletedProcess[str], first_line: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(first_line), result.stderr


@pytest.mark.parametrize("command", ["evaluate", "data stats"])
def test_bogus_format_names_the_field(tiny_run, command: str) -> None:
    root, run_dir = tiny_run
    args = ["evaluate", str(run_dir)] if command == "evaluate" else ["data", "stats"]
    result = cli(*args, "--data", str(root / "imdb"), "--format", "bogus")
    assert_user_error(result, "error: data.format: Input should be 'auto'")
    assert "(got 'bogus')" in result.stderr
