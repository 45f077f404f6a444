"""Atomic writes: unwritable folders, full disks and failed writes become one-line UserErrors, no
temporary file is ever left behind, and written files get the permissions the umask asks for."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import one_line_user_error

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import (
    atomic_path,
    ensure_writable_dir,
    staged_dir,
    write_json_atomic,
    write_text_atomic,
)

SCRIPT = Path(sys.executable).parent / "imdb-sentiment"

needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a Linux /proc")
needs_sys_kernel = pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs a Linux /sys/kernel")
as_root = os.geteuid() == 0


# --------------------------------------------------------------------------------------------------
# Unwritable folders (real ones: os.access is never mocked, and says "writable" to root everywhere)


@needs_proc
def test_proc_is_not_a_writable_output_folder() -> None:
    one_line_user_error(lambda: ensure_writable_dir(Path("/proc")), "/proc", "Choose a writable folder")


@needs_sys_kernel
def test_sys_kernel_is_not_a_writable_output_folder() -> None:
    one_line_user_error(
        lambda: ensure_writable_dir(Path("/sys/kernel")), "/sys/kernel", "Choose a writable folder"
    )


@needs_proc
def test_atomic_write_into_proc_is_a_user_error() -> None:
    one_line_user_error(
        lambda: write_text_atomic(Path("/proc/submission.csv"), "id,sentiment\n"),
        "/proc/submission.csv",
        "Choose a writable folder",
    )
    assert not Path("/proc/submission.csv").exists()


@pytest.mark.skipif(as_root, reason="root ignores folder permissions; the /proc tests cover root")
def test_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        one_line_user_error(lambda: ensure_writable_dir(locked), str(locked), "not writable")
        one_line_user_error(lambda: write_text_atomic(locked / "a.txt", "x"), "a.txt", "Choose a writable folder")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_writable_folder_is_created_and_left_clean(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    assert ensure_writable_dir(folder) == folder
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe file is gone


def test_a_file_in_the_way_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_user_error(lambda: ensure_writable_dir(blocker / "runs"), "Cannot create output folder")
    one_line_user_error(lambda: ensure_writable_dir(blocker), "Cannot create output folder")


# --------------------------------------------------------------------------------------------------
# Failures while writing: a UserError where the user can act, and never a temporary file left


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_disk_full_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    target = tmp_path / "metrics.json"
    real_write_text = Path.write_text

    def write_half_then_fail(self: Path, data: str, *args: object, **kwargs: object) -> int:
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)  # some bytes made it to disk
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_text", write_half_then_fail)
    one_line_user_error(
        lambda: write_json_atomic(target, {"accuracy": 0.9176, "notes": "x" * 1000}),
        f"Disk full while writing {target}",
        "free space",
    )
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


def test_disk_full_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "predictions.csv"
    target.write_text("old, complete\n")
    with pytest.raises(UserError, match="Disk full"), atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old, complete\n"
    assert [path.name for path in tmp_path.iterdir()] == ["predictions.csv"]


def test_other_errors_propagate_unchanged_and_leave_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(ValueError, match="a bug"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise ValueError("a bug")
    with pytest.raises(OSError, match="Input/output error"), atomic_path(target) as tmp:  # not the user's to fix
        raise OSError(errno.EIO, "Input/output error")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.EFBIG, "ulimit -f"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
     (errno.EPERM, "permission denied")],
    ids=["EFBIG", "EROFS", "EACCES", "EPERM"],
)  # fmt: skip
def test_every_write_fault_is_one_line_naming_the_file(tmp_path: Path, code: int, advice: str) -> None:
    target = tmp_path / "metrics.json"

    def fail() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(code, os.strerror(code))

    one_line_user_error(fail, f"Cannot write {target}", advice)
    staged = tmp_path / "model"

    def fail_staged() -> None:
        with staged_dir(staged, "saving the model into", "train again") as staging:
            staging.mkdir()
            raise OSError(code, os.strerror(code))

    one_line_user_error(fail_staged, f"saving the model into {staged}", advice, "train again")
    assert list(tmp_path.iterdir()) == []


def test_a_short_write_without_errno_under_ulimit_f(tmp_path: Path) -> None:
    """numpy reports a write cut by the file-size limit as "N requested and M written", no errno."""
    code = (
        "import resource, sys, numpy as np; from pathlib import Path\n"
        "from imdb_sentiment.errors import UserError; from imdb_sentiment.io_utils import atomic_path\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    with atomic_path(Path(sys.argv[1])) as tmp, open(tmp, 'wb') as f: np.save(f, np.zeros(4096))\n"
        "except UserError as e: print(e)\n"
    )
    target = tmp_path / "coef.npy"
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith(f"Cannot write {target} (File too large)") and "ulimit -f" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_is_a_user_error_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "model"
    (target / "inside").mkdir(parents=True)  # a non-empty folder: os.replace cannot put a file there
    message = one_line_user_error(lambda: write_text_atomic(target, "x"), f"Cannot write {target}")
    assert "Choose a writable folder" in message
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_success_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    write_json_atomic(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["out.json"]


# --------------------------------------------------------------------------------------------------
# Permissions: what open() would give (0666 minus the umask), not mkstemp's 0600


@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=["022", "002", "077"]
)
def test_written_files_respect_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    # A fresh interpreter: the umask is read once, when io_utils is imported.
    target = tmp_path / "out.txt"
    code = (
        "import os, sys; from pathlib import Path\n"
        f"os.umask({umask:#o})\n"
        "from imdb_sentiment.io_utils import write_text_atomic\n"
        "write_text_atomic(Path(sys.argv[1]), 'x')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, timeout=60)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_text() == "x"


def test_umask_is_left_as_it_was() -> None:
    code = (
        "import os; os.umask(0o027)\n"
        "import imdb_sentiment.io_utils\n"
        "print(oct(os.umask(0)))\n"
    )  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "0o27"


# --------------------------------------------------------------------------------------------------
# The real command line: one line on stderr, exit code 2, no traceback


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import NullCapture, run_cli, write_tiny_parquet_imdb

    root = tmp_path_factory.mktemp("cli-io")
    write_tiny_parquet_imdb(root / "imdb")
    code, _, err = run_cli(["train", "tfidf-lr", "--data", str(root / "imdb"), "--output-dir", str(root / "runs"),
                            "--set", "model.params.min_df=1", "--quiet"], NullCapture())  # fmt: skip
    assert code == 0, err
    (run_dir,) = (root / "runs").iterdir()
    return run_dir


def assert_clean_failure(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@needs_proc
def test_cli_train_into_proc(trained_run: Path) -> None:
    root = trained_run.parents[1]
    result = run_script("train", "tfidf-lr", "--data", "imdb", "--output-dir", "/proc", "--quiet", cwd=root)
    assert_clean_failure(result, "/proc", "Choose a writable folder")


@needs_proc
def test_cli_kaggle_submission_under_proc(trained_run: Path) -> None:
    result = run_script(
        "predict", str(trained_run), "A wonderful film.", "--kaggle-submission", "/proc/submission.csv",
        cwd=trained_run.parent,
    )  # fmt: skip
    assert_clean_failure(result, "/proc/submission.csv", "Choose a writable folder")


@needs_sys_kernel
def test_cli_predictions_under_sys_kernel(trained_run: Path) -> None:
    result = run_script(
        "predict", str(trained_run), "A dull film.", "--output", "/sys/kernel/p.csv", cwd=trained_run
    )
    assert_clean_failure(result, "/sys/kernel/p.csv", "Choose a writable folder")


def test_cli_writes_readable_outputs(trained_run: Path, tmp_path: Path, capsys) -> None:
    from helpers import run_cli

    output = tmp_path / "predictions.csv"
    code, _, err = run_cli(["predict", str(trained_run), "A wonderful film.", "--output", str(output)], capsys)
    assert code == 0, err
    assert output.read_text().startswith("id,prob_positive,prediction,known_token_share\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~umask


def test_cli_train_under_a_file_size_limit_fails_in_one_line_and_records_it(trained_run: Path) -> None:
    """ulimit -f smaller than the model's files but not the run's first ones: the run fails after it
    started, in one line, run.json says "failed" (never "running") and no temporary file is left."""
    import resource

    root = trained_run.parents[1]
    first = max((trained_run / name).stat().st_size for name in ("config.yaml", "environment.json", "data.json",
                "predictions.csv", "run.json"))  # fmt: skip
    limit = first + 256
    assert max(path.stat().st_size for path in (trained_run / "model").iterdir()) > limit

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    args = ["train", "tfidf-lr", "--data", "imdb", "--output-dir", "limited", "--set", "model.params.min_df=1",
            "--quiet"]  # fmt: skip
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=root,
                            preexec_fn=limited)  # fmt: skip
    assert_clean_failure(result, "File too large", "ulimit -f")
    (run_dir,) = (root / "limited").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert not [path for path in run_dir.rglob("*") if path.name.endswith(".tmp")]


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` made read-only for real: permissions for a normal user, a read-only bind mount for
    root (who ignores permissions); skips when neither is possible."""
    if not as_root:
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")] if path.is_dir()}
        for path in modes:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("root without mount rights: no read-only folder to test with")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_cli_analyze_and_evaluate_on_a_read_only_run_folder(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = trained_run.parents[1] / "read-only-run"
    shutil.copytree(trained_run, copy)
    with read_only(copy):
        for command in ("analyze", "evaluate"):
            result = run_script(command, str(copy), cwd=trained_run.parents[1])
            assert_clean_failure(result, f"{copy.name}/{'analysis' if command == 'analyze' else 'evaluations'}",
                                 "Choose a writable folder")  # fmt: skip
