"""``scripts/bad_inputs.sh``: every known bad input through the real CLI (about a minute on an idle
2-core machine; deselect with ``-k 'not bad_inputs_script'`` when iterating)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bad_inputs.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bad_inputs_script_passes() -> None:
    env = {**os.environ, "IMDB_SENTIMENT": str(Path(sys.executable).with_name("imdb-sentiment"))}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "bad_inputs.sh: all" in result.stdout and "crafted pickle checkpoint" in result.stdout
    rows = [line for line in result.stdout.splitlines() if " | " in line][1:]
    assert len(rows) >= 25 and not any("TRACEBACK" in row or "!=" in row for row in rows), report
