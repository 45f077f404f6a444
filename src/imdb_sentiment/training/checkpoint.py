"""Training checkpoints in the run folder: written atomically, with the RNG state that makes a
resumed run repeat an uninterrupted one exactly."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imdb_sentiment.io_utils import atomic_path


class CheckpointStore:
    """``checkpoints/<name>.pt`` files of one run; without a folder, saving is a no-op."""

    def __init__(self, folder: Path | None, device: torch.device) -> None:
        self.folder = folder
        self.device = device

    def save(self, state: dict[str, Any], name: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / name) as tmp:
            torch.save(state, tmp)

    def load(self, name: str) -> dict[str, Any] | None:
        if self.folder is None or not (self.folder / name).exists():
            return None
        return torch.load(self.folder / name, map_location=self.device, weights_only=False)


def get_rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
