"""The file helpers every room shares: atomic writes (nothing is ever left half-written, and a
failed write is one line saying what to do), the one JSON reader, the one integrity format (a
manifest of every file's sha256, written at save and verified at load), paths that must stay inside
a folder, and the cache folder."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from imdb_sentiment.errors import UserError


def _read_umask() -> int:
    """The process umask. Only settable, never just readable: set it and put it straight back."""
    current = os.umask(0o022)
    os.umask(current)
    return current


# Read once at import, not per write: os.umask briefly changes a process-wide setting.
UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give a new file; mkstemp's own mode is 0600
DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# Write failures the user can act on, and what to do about each (the others are bugs: they propagate).
WRITE_FAULTS = {
    **{code: "the disk is full: free space and try again, or choose another folder" for code in DISK_FULL_ERRNOS},
    errno.EFBIG: "the file is larger than this process may write (ulimit -f): raise the limit or choose another folder",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a writable folder (or fix its permissions)",
    errno.EPERM: "permission denied: choose a writable folder (or fix its permissions)",
}


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    The file gets the permissions a plain ``open()`` would (0666 minus the umask). A write fault (full
    disk, file-size limit, read-only or forbidden folder) is a :class:`UserError`; the temporary file
    is removed on any failure.
    """
    target = Path(target)
    _make_dir(target.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _write_error(target, exc, f"no file can be created in {target.parent}") from None
    tmp = Path(tmp_name)
    try:
        with suppress(OSError):  # best effort: some filesystems (FAT, CIFS) have no permissions
            os.fchmod(fd, FILE_MODE)
        os.close(fd)
        try:
            yield tmp
        except OSError as exc:
            if (fault := write_fault(exc, tmp)) is not None:
                raise _write_error(target, fault) from None
            raise
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise _write_error(target, exc) from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT: the one test of a full disk (atomic writes, model saves)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def write_fault(exc: BaseException, written: Path) -> OSError | None:
    """The failed write the user can act on (full disk, ulimit -f, read-only, permissions) behind
    ``exc``, raised while writing ``written`` (a file or a folder), or None (a bug: let it propagate).
    Some writers (numpy's ``tofile``) report a short write with no errno: its cause is found here."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in WRITE_FAULTS:
        return exc
    if exc.errno is not None:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        files = [written] if written.is_file() else [path for path in written.rglob("*") if path.is_file()]
        if any(file.stat().st_size >= limit for file in files):
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    with suppress(OSError):
        if os.statvfs(written.parent).f_bavail == 0:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


@contextmanager
def staged_dir(target: Path, doing: str, redo: str) -> Iterator[Path]:
    """Build a folder as ``<target>.tmp`` and swap it into place only once complete: a crash never
    leaves a half-written folder at ``target``, and a failed build leaves no ``.tmp`` behind. A write
    fault is a UserError: "Disk full while {doing} {target}: free some space and {redo}.", or
    "Cannot finish {doing} {target}: {what to do}, then {redo}." for the others."""
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        if target.is_symlink():  # rmtree refuses links; the new folder replaces the link, never its target
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException as exc:
        fault = write_fault(exc, staging)  # before the staging folder (the evidence of a short write) goes
        shutil.rmtree(staging, ignore_errors=True)
        if fault is not None and is_disk_full(fault):
            raise UserError(f"Disk full while {doing} {target}: free some space and {redo}.") from None
        if fault is not None:
            raise UserError(
                f"Cannot finish {doing} {target} ({fault.strerror}): {WRITE_FAULTS[fault.errno]}, then {redo}."
            ) from None
        raise


def _write_error(target: Path, exc: OSError, what: str = "") -> UserError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if is_disk_full(exc):
        return UserError(
            f"Disk full while writing {target} ({reason}): free space and try again, or choose another folder."
        )
    if exc.errno in WRITE_FAULTS and not what:
        return UserError(f"Cannot write {target} ({reason}): {WRITE_FAULTS[exc.errno]}.")
    detail = f"{what} ({reason})" if what else reason
    return UserError(f"Cannot write {target}: {detail}. Choose a writable folder.")


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: Path, data: Any) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def ensure_writable_dir(directory: Path) -> Path:
    """Create ``directory`` if needed and check it is writable, or raise a UserError.

    Writability is tested by creating (and deleting) a file there: ``os.access`` says yes to root
    everywhere, including /proc and /sys, where no file can be created.
    """
    directory = _make_dir(Path(directory))
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise UserError(
            f"Output folder {directory} is not writable: no file can be created there ({exc.strerror or exc}). "
            "Choose a writable folder."
        ) from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return directory


def _make_dir(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"Cannot create output folder {directory}: {exc.strerror or exc}. Choose a writable folder."
        ) from None
    return directory


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where downloads, token caches, embeddings, LLM weights and answers are kept ($XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imdb-sentiment"


# ------------------------------------------------------------------------------------------- reading
def read_json(path: Path, redo: str = "") -> dict[str, Any]:
    """The one JSON reader: the JSON object in ``path``, or a one-line UserError naming the file and
    saying ``redo`` (what to do about it)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = f"{path} does not exist"
    except OSError as exc:
        problem = f"Cannot read {path} ({exc.strerror or exc})"
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = f"{path} is not valid JSON ({str(exc)[:200]})"
    else:
        if isinstance(data, dict):
            return data
        problem = f"{path} holds a JSON {type(data).__name__}, not an object"
    raise UserError(f"{problem}; {redo}." if redo else f"{problem}.")


# ----------------------------------------------------------------------------------------- integrity
# One format for every saved folder whose files must not change (a run's model/, its ONNX export, a
# Trainer checkpoint): manifest.json = {"format", "files": {relative path: sha256}, plus what the
# folder belongs to}. Written last at save; verified before anything in the folder is loaded.
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "imdb-sentiment-manifest-1"


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (its manifest excepted), by relative POSIX path, sorted."""
    folder = Path(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.name != MANIFEST_FILE)
    return {path.relative_to(folder).as_posix(): sha256_file(path) for path in files}


def digest_of(files: dict[str, str]) -> str:
    """One sha256 for a whole folder, from its files' digests (what an ensemble records of a member)."""
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def write_manifest(folder: Path, **belongs_to: Any) -> dict[str, Any]:
    """Record every file's sha256 in ``folder/manifest.json`` (last, once the folder is complete),
    with ``belongs_to``: what the folder is tied to (a run's model name and config digest)."""
    manifest = {"format": MANIFEST_FORMAT, **belongs_to, "files": file_digests(folder)}
    write_json_atomic(Path(folder) / MANIFEST_FILE, manifest)
    return manifest


def read_manifest(folder: Path, redo: str) -> dict[str, Any] | None:
    """The folder's manifest; None when it has none (saved before manifests existed)."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = read_json(path, redo)
    files = manifest.get("files")
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict) or not files:
        raise UserError(f"{path} is not a manifest ({MANIFEST_FORMAT}); the folder is damaged: {redo}.")
    return manifest


def manifest_mismatch(folder: Path, manifest: dict[str, Any]) -> str | None:
    """What differs between the files listed in ``manifest`` and those in ``folder`` (None: all match).
    Files the manifest does not list are not checked (other ranks may add theirs after rank 0 listed)."""
    for name, expected in manifest["files"].items():
        file = Path(folder) / name
        if not file.is_file():
            return f"{file} is missing (listed in {MANIFEST_FILE})"
        if sha256_file(file) != expected:
            return f"{file} was altered after saving (its sha256 differs from {MANIFEST_FILE})"
    return None


def verify_manifest(folder: Path, redo: str) -> dict[str, Any] | None:
    """Check ``folder`` against its manifest: a missing or altered file is a UserError naming it and
    saying ``redo``. Returns the manifest, or None for a folder saved before manifests existed."""
    manifest = read_manifest(folder, redo)
    if manifest is not None and (problem := manifest_mismatch(folder, manifest)):
        raise UserError(f"{problem}: {redo}.")
    return manifest


# -------------------------------------------------------------------------------------------- paths
def path_inside(root: Path, *parts: str) -> Path:
    """``root/parts``, refused when a symbolic link on the way leads out of ``root``: a write there
    would land in a folder the user never named (e.g. a run's ``evaluations/`` linked elsewhere)."""
    path = Path(root).joinpath(*parts)
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise UserError(
            f"{path} is a link that leads out of {root} (to {path.resolve()}); nothing is written through "
            "it: remove the link (or make it a plain folder) and try again."
        )
    return path


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same path once links are resolved, or (both existing) the
    same inode on the same device, which catches hard links too."""
    first, second = Path(first), Path(second)
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return False
