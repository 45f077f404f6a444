"""Atomic file writes and checksums: nothing is ever left half-written."""

from __future__ import annotations

import errno
import hashlib
import json
import os
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


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    The file gets the permissions a plain ``open()`` would (0666 minus the umask). A full disk or an
    unwritable folder is a :class:`UserError`; the temporary file is removed on any failure.
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
            if is_disk_full(exc):
                raise _write_error(target, exc) from None
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


@contextmanager
def staged_dir(target: Path, doing: str, redo: str) -> Iterator[Path]:
    """Build a folder as ``<target>.tmp`` and swap it into place only once complete: a crash never
    leaves a half-written folder at ``target``, and a failed build leaves no ``.tmp`` behind. A full
    disk is a UserError: "Disk full while {doing} {target}: free some space and {redo}."."""
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(exc):
            raise UserError(f"Disk full while {doing} {target}: free some space and {redo}.") from None
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def _write_error(target: Path, exc: OSError, what: str = "") -> UserError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if is_disk_full(exc):
        return UserError(
            f"Disk full while writing {target} ({reason}): free space and try again, or choose another folder."
        )
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
