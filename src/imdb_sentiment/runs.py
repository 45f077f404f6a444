"""Run folders: one folder per experiment with everything needed to trust and reuse the result.

Layout::

    runs/<name>-<YYYYmmdd-HHMMSS>/
      run.json            status (running | completed | failed), times, command
      config.yaml         the resolved, validated config
      environment.json    versions, machine, seed
      data.json           dataset source, its classes, split sizes, content checksums
      metrics.json        test metrics, times, parameter count, peak memory, validation metrics
      history.csv         per-epoch (or per-C) training history
      predictions.csv     every test review: id, label, the probability columns, prediction; sentiment
                          as ever (prob_positive, labels 0 / 1), any other task prob_<class> per class
                          and class names (evaluation/predictions.py)
      model/              the saved model (model.json records its classes; renamed into place only once
                          complete), with manifest.json: every file's sha256, the model's name and the
                          run's config digest
      plots/              confusion_matrix.png (K x K), roc_curve.png (two classes), training_curves.png,
                          reliability.png
      train.log           the log; tensorboard/ and checkpoints/ for PyTorch models

Every file is written atomically (temp file, then rename), so an interrupted run never leaves a
half-written file; ``run.json`` says whether the run completed. :class:`RunFolder` is the one reader
of a run folder: its paths, its inference config, its optional JSON files, its status, and the check
that ``model/`` is intact and belongs to this run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import (
    MANIFEST_FILE,
    ensure_writable_dir,
    path_inside,
    read_json,
    staged_dir,
    verify_manifest,
    write_json_atomic,
    write_manifest,
)

__all__ = ["MANIFEST_FILE", "RunFolder", "read_json"]  # read_json: the io_utils reader, re-exported

TRACKED_PACKAGES = (
    "imdb-sentiment", "torch", "transformers", "tokenizers", "accelerate", "peft", "scikit-learn",
    "gensim", "numpy", "pandas", "pyarrow", "pydantic",
)  # fmt: skip
RETRAIN = "restore the run folder or train it again"


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunFolder:
    """One run folder: where each of its files lives and how to read (and check) them."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ---------------------------------------------------------------------------------------- paths
    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def status_file(self) -> Path:
        return self.path / "run.json"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def predictions_file(self) -> Path:
        return self.path / "predictions.csv"

    def output_folder(self, name: str) -> Path:
        """A writable sub-folder (``evaluations``, ``analysis``), checked before any work is done: one
        line when it (or a link on the way) leads out of the run folder or cannot be written."""
        return ensure_writable_dir(path_inside(self.path, name))

    # -------------------------------------------------------------------------------------- opening
    @classmethod
    def finished(cls, path: str | Path) -> RunFolder:
        """A run folder with a config and a saved model, else one line saying what is wrong."""
        run = cls(Path(path))
        if not run.config_file.is_file():
            raise UserError(f"{run.path} is not a run folder (no config.yaml). Pass a folder under runs/.")
        if not (run.model_dir / "model.json").is_file():
            raise UserError(
                f"{run.path} has no saved model; the run did not complete. Train it again or --resume."
            )
        return run

    # -------------------------------------------------------------------------------------- reading
    def raw_config(self) -> dict[str, Any]:
        """config.yaml as data; the validated inference config is ``models.configure.configure(
        run.raw_config(), for_training=False)`` (configure sits above this room)."""
        from imdb_sentiment.config import read_yaml

        return read_yaml(self.config_file)

    def config_digest(self) -> str:
        """sha256 of the run's config as data (comments and layout of config.yaml do not count)."""
        canonical = json.dumps(self.raw_config(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def read(self, name: str) -> dict[str, Any]:
        return read_json(self.path / name, "is this a run folder?")

    def read_optional(self, name: str) -> dict[str, Any] | None:
        """A JSON file the caller can do without (an exported run lacks some): absent or damaged -> None."""
        try:
            return read_json(self.path / name)
        except UserError:
            return None

    def status(self) -> dict[str, Any]:
        return self.read("run.json") if self.status_file.exists() else {}

    def write_status(self, status: str, **extra: Any) -> None:
        record = {**self.status(), "status": status, "updated": now_utc(), **extra}
        try:
            write_json_atomic(self.status_file, record)
        except UserError:
            # A full disk (or a file-size limit) refuses a new file, but run.json's own block still has
            # room: overwrite it in place rather than leave a run that ended reading "running".
            if not self.status_file.is_file():
                raise
            try:
                with open(self.status_file, "r+", encoding="utf-8") as handle:
                    handle.write(json.dumps(record, indent=2, default=str) + "\n")
                    handle.truncate()
            except OSError:
                raise UserError(
                    f"Cannot record status {status!r} in {self.status_file}: the disk refuses writes."
                ) from None

    # ------------------------------------------------------------------------------------ the model
    def tie(self, model_name: str) -> dict[str, str]:
        """What a manifest records to tie a saved folder (model/, onnx/) to this run."""
        return {"model": model_name, "config_sha256": self.config_digest()} if self.config_file.is_file() else {}

    def save_model(self, model: Any) -> Path:
        """Save into model.tmp/, then rename to model/: a crash never leaves a half-saved model, and a
        failed save leaves no model.tmp/ behind. The manifest ties the model to this run's config."""
        tie = self.tie(model.name)
        with staged_dir(self.model_dir, "saving the model into", "train again") as staging:
            model.save(staging)
            write_manifest(staging, **tie)
        return self.model_dir

    def verify_model(self) -> dict[str, Any] | None:
        """Check model/ before it is loaded (see :meth:`verify_saved`). Returns its manifest, or None
        for a model saved before manifests existed (nothing to check against)."""
        return self.verify_saved(self.model_dir, RETRAIN)

    def verify_saved(self, folder: Path, redo: str) -> dict[str, Any] | None:
        """Every file of ``folder`` against its manifest, and the manifest against this run (the
        model's name and config digest), so a folder copied in from another run is refused."""
        manifest = verify_manifest(folder, redo)
        if manifest is None or "config_sha256" not in manifest:  # saved before folders were tied to runs
            return manifest
        section = self.raw_config().get("model")
        name = section.get("name") if isinstance(section, dict) else None
        if manifest.get("model") != name or manifest["config_sha256"] != self.config_digest():
            raise UserError(
                f"{folder} belongs to another run: its manifest records model {manifest.get('model')} trained "
                f"with another config than {self.config_file}; {redo}."
            )
        return manifest


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
    return RunFolder(run_dir).status()


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    RunFolder(run_dir).write_status(status, **extra)


def check_resumable(run_dir: Path, overwrite: bool) -> None:
    """A run folder ``--resume`` may continue: one that holds a completed run is replaced only with
    ``--overwrite`` (new run folders never collide: their names carry the start time)."""
    run = RunFolder(run_dir)
    if not run.config_file.is_file():
        raise UserError(f"--resume {run_dir}: not a run folder (no config.yaml).")
    status = run.status()
    if status.get("status") == "completed" and not overwrite:
        raise UserError(
            f"--resume {run_dir}: this run completed (test accuracy {status.get('accuracy', float('nan')):.4f}); "
            "resuming would replace its model and metrics. Pass --overwrite to do so, or train a new run."
        )


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
    return RunFolder(run_dir).save_model(model)


def list_runs(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if (p / "run.json").is_file())
