"""Training checkpoints in the run folder, safe to resume from.

- Loaded with ``torch.load(weights_only=True)``: a checkpoint holds tensors and plain Python values
  only (the RNG states are stored as tensors and tuples), so a crafted file in a folder someone hands
  us cannot run code.
- Written atomically (temporary file, fsync, rename) with a sha256 beside it (``last.pt.sha256``).
  The sidecar lists every digest its file may have: while a file is being replaced it holds the old
  and the new one, so a process stopped at any instant (Ctrl-C, SIGKILL, power loss between two
  renames) leaves every checkpoint matching its own sidecar; the tests stop a save at each step.
- A resume point is written at every epoch end, every ``training.checkpoint_every_steps`` steps and on
  SIGTERM; one written inside an epoch also holds the position in it (batches taken, running totals).
- The newest two resume points are kept (``last.pt`` and ``previous.pt``): a damaged newest one
  (truncated by a full disk, a killed job) is detected by its checksum and the previous one is used,
  with a warning.
- A write that fails (full disk, a file-size limit, a read-only filesystem) is a one-line UserError;
  the checkpoints already there stay as they were.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import atomic_path, sha256_file, write_text_atomic

logger = logging.getLogger("imdb_sentiment.training")

LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"


class CheckpointStore:
    """``checkpoints/*.pt`` of one run; without a folder, saving is a no-op and loading finds nothing.
    Not ``writable``: loads only (the ranks besides rank 0 of a distributed run)."""

    def __init__(self, folder: Path | None, device: torch.device, writable: bool = True) -> None:
        self.folder = folder
        self.device = device
        self.writable = writable

    # --------------------------------------------------------------------------------------- saving
    def save(self, state: dict[str, Any], name: str) -> None:
        if self.folder is None or not self.writable:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(self.folder, exc) from None
        with atomic_path(self.folder / name) as tmp:
            digest = _write_synced(state, tmp)
            self._accept(name, [digest, *self._accepted(name)])  # the old file and the new one
        self._accept(name, [digest])

    def save_resume_point(self, state: dict[str, Any]) -> None:
        """Write ``last.pt``, keeping the one it replaces as ``previous.pt``."""
        if self.folder is None or not self.writable:
            return
        if not (self.folder / LAST).exists():
            self.save(state, LAST)
            return
        replaced = self._accepted(LAST)
        # The order makes every instant safe: a sidecar widens before its file changes and narrows after.
        with atomic_path(self.folder / LAST) as tmp:
            digest = _write_synced(state, tmp)
            self._accept(PREVIOUS, [*replaced, *self._accepted(PREVIOUS)])
            os.replace(self.folder / LAST, self.folder / PREVIOUS)
            self._accept(LAST, [digest, *replaced])
        self._accept(LAST, [digest])
        self._accept(PREVIOUS, replaced)

    def _accept(self, name: str, digests: list[str]) -> None:
        write_text_atomic(self._checksum_file(name), "".join(f"{d}\n" for d in dict.fromkeys(digests)))

    def _accepted(self, name: str) -> list[str]:
        checksum_file = self._checksum_file(name)
        if not checksum_file.is_file():
            return []
        return [line.strip() for line in checksum_file.read_text().splitlines() if line.strip()]

    # -------------------------------------------------------------------------------------- loading
    def load(self, name: str) -> dict[str, Any] | None:
        """The checkpoint, None if there is none; UserError if it is there but damaged."""
        if self.folder is None or not (self.folder / name).exists():
            return None
        path = self.folder / name
        checksum_file = self._checksum_file(name)
        if not checksum_file.is_file():
            raise UserError(
                f"checkpoint {path} has no {checksum_file.name}: it was written by an older version, or its "
                "writing was cut short."
            )
        if sha256_file(path) not in self._accepted(name):
            raise UserError(f"checkpoint {path} is damaged (its sha256 does not match {checksum_file.name}).")
        try:
            return torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # pickle.UnpicklingError for disallowed types, RuntimeError for bad data
            raise UserError(
                f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}); it is damaged or was "
                "written by an older version: train the run again."
            ) from None

    def load_resume_point(self) -> dict[str, Any] | None:
        """``last.pt``, else (with a warning) ``previous.pt``; None when the run has no checkpoint."""
        problems = []
        for name in (LAST, PREVIOUS):
            try:
                state = self.load(name)
            except UserError as exc:
                problems.append(str(exc))
                logger.warning("%s", exc)
                continue
            if state is not None:
                if problems:
                    logger.warning("resuming from the previous checkpoint (%s) instead", name)
                return state
        if problems:
            raise UserError(f"cannot resume: {problems[0]} No earlier good checkpoint; train the run again.")
        return None

    def _checksum_file(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}.sha256"


def _write_synced(state: dict[str, Any], path: Path) -> str:
    """Save ``state`` to ``path``, on disk (fsync) before any rename makes it a checkpoint; its sha256."""
    try:
        torch.save(state, path)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    except (OSError, RuntimeError) as exc:  # torch.save's writer fails with a RuntimeError, no errno
        raise _write_error(path.parent, exc) from None
    return sha256_file(path)


def _write_error(folder: Path, exc: OSError | RuntimeError) -> UserError:
    """One line for a checkpoint that cannot be written. torch.save says only "unexpected pos 704 vs
    598" when a write comes up short (full disk, ``ulimit -f``), so the free space is said beside it."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[-1]
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MB free there"
    except OSError:
        free = "its free space unknown"
    return UserError(
        f"Cannot write a checkpoint in {folder} ({reason}; {free}): the disk is full, the folder read-only, or "
        "a file-size limit (ulimit -f) was reached. Make room, then continue with train --resume."
    )


def get_rng_state() -> dict[str, Any]:
    """Every RNG the loop draws from, as tensors and plain values (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state(
        (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
         numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    )  # fmt: skip
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
