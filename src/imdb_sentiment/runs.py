"""Run folders: one folder per experiment with everything needed to trust and reuse the result.

Layout::

    runs/<name>-<YYYYmmdd-HHMMSS>/
      run.json            status (running | completed | failed), times, command
      config.yaml         the resolved, validated config
      environment.json    versions, machine, seed
      data.json           dataset source, split sizes, content checksums
      metrics.json        test metrics, times, parameter count, peak memory, validation metrics
      history.csv         per-epoch (or per-C) training history
      predictions.csv     id, label, prob_positive, prediction for every test review
      model/              the saved model (renamed into place only once complete)
      plots/              confusion_matrix.png, roc_curve.png, training_curves.png
      train.log           the log; tensorboard/ and checkpoints/ for PyTorch models

Every file is written atomically (temp file, then rename), so an interrupted run never leaves a
half-written file; ``run.json`` says whether the run completed.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import ensure_writable_dir, sha256_file, staged_dir, write_json_atomic

MANIFEST_FILE = "manifest.json"  # inside model/: sha256 of every file saved with the model
MANIFEST_FORMAT = "imdb-sentiment-manifest-1"

TRACKED_PACKAGES = (
    "imdb-sentiment", "torch", "transformers", "tokenizers", "accelerate", "peft", "scikit-learn",
    "gensim", "numpy", "pandas", "pyarrow", "pydantic",
)  # fmt: skip


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def create_run_dir(output_dir: str | Path, name: str) -> Path:
    root = ensure_writable_dir(Path(output_dir))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{name}-{stamp}-{suffix}"
    run_dir.mkdir()
    return run_dir


def read_status(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return read_json(path) if path.exists() else {}


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    path = run_dir / "run.json"
    current = read_status(run_dir)
    current.update({"status": status, "updated": now_utc(), **extra})
    write_json_atomic(path, current)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"Cannot read {path}: {exc}. Is this a run folder?") from None


def check_resumable(run_dir: Path, overwrite: bool) -> None:
    """A run folder ``--resume`` may continue: one that holds a completed run is replaced only with
    ``--overwrite`` (new run folders never collide: their names carry the start time)."""
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: not a run folder (no config.yaml).")
    status = read_status(run_dir)
    if status.get("status") == "completed" and not overwrite:
        raise UserError(
            f"--resume {run_dir}: this run completed (test accuracy {status.get('accuracy', float('nan')):.4f}); "
            "resuming would replace its model and metrics. Pass --overwrite to do so, or train a new run."
        )


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.yaml). Pass a folder under runs/.")
    if not (run_dir / "model" / "model.json").is_file():
        raise UserError(f"{run_dir} has no saved model; the run did not complete. Train it again or --resume.")
    return run_dir


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def package_versions() -> dict[str, str]:
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment_record(seed: int, data_seed: int) -> dict[str, Any]:
    return {"seed": seed, "data_seed": data_seed, "machine": machine_info(), "packages": package_versions(),
            "git_commit": git_commit(), "load_average": _load_average(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}  # fmt: skip


def _load_average() -> list[float] | None:
    """1/5/15-minute load: timings on a shared 2-core machine mean little without it."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return None


def save_model_atomically(model: Any, run_dir: Path) -> Path:
    """Save into model.tmp/, then rename to model/: a crash never leaves a half-saved model, and a
    failed save leaves no model.tmp/ behind."""
    target = run_dir / "model"
    with staged_dir(target, "saving the model into", "train again") as staging:
        model.save(staging)
        write_model_manifest(staging)
    return target


def write_model_manifest(model_dir: Path) -> None:
    """Record the sha256 of every file of a saved model, so serving can refuse a damaged or altered one."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    checksums = {p.relative_to(model_dir).as_posix(): sha256_file(p) for p in files}
    write_json_atomic(model_dir / MANIFEST_FILE, {"format": MANIFEST_FORMAT, "files": checksums})


def verify_model_manifest(model_dir: Path) -> bool:
    """Check the model's files against its manifest: a missing or altered file is a UserError naming it.
    Returns False for a model saved before manifests existed (nothing to check against)."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        return False
    manifest = read_json(path)
    files = manifest.get("files")
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
        raise UserError(f"{path} is not a model manifest ({MANIFEST_FORMAT}); the run folder is damaged.")
    for name, expected in files.items():
        file = model_dir / name
        if not file.is_file():
            raise UserError(
                f"{file} is missing (listed in {MANIFEST_FILE}); the run folder is incomplete, train it again."
            )
        if sha256_file(file) != expected:
            raise UserError(
                f"{file} was altered after saving (its sha256 differs from {MANIFEST_FILE}); restore it or train again."
            )
    return True


def list_runs(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if (p / "run.json").is_file())
