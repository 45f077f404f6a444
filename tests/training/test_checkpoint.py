"""Checkpoints: no code runs from a crafted file, damage is detected, the previous one is used."""

from __future__ import annotations

import hashlib
import logging
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from imdb_sentiment.errors import UserError
from imdb_sentiment.training.checkpoint import CheckpointStore, get_rng_state, set_rng_state


class MakesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "checkpoints", torch.device("cpu"))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path) -> None:
    checkpoints = store(tmp_path)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoints.save({"rng": get_rng_state(), "step": 7}, "last.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    loaded = checkpoints.load("last.pt")
    assert loaded is not None and loaded["step"] == 7
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path) -> None:
    checkpoints = store(tmp_path)
    checkpoints.folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"network": MakesMarker(marker)})
    (checkpoints.folder / "last.pt").write_bytes(payload)
    # the attacker can also write a matching checksum: the loader must still refuse
    (checkpoints.folder / "last.pt.sha256").write_text(hashlib.sha256(payload).hexdigest())
    with pytest.raises(UserError, match="cannot be loaded safely"):
        checkpoints.load("last.pt")
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: loading it unsafely does create the marker
    assert marker.exists()


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog) -> None:
    checkpoints = store(tmp_path)
    checkpoints.save_resume_point({"epoch": 1, "weights": torch.ones(3)})
    checkpoints.save_resume_point({"epoch": 2, "weights": torch.ones(3) * 2})
    assert sorted(p.name for p in checkpoints.folder.iterdir()) == [
        "last.pt", "last.pt.sha256", "previous.pt", "previous.pt.sha256"
    ]  # fmt: skip
    assert checkpoints.load_resume_point()["epoch"] == 2
    last = checkpoints.folder / "last.pt"
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 2])  # truncated by a full disk
    with caplog.at_level(logging.WARNING, logger="imdb_sentiment.training"):
        state = checkpoints.load_resume_point()
    assert state["epoch"] == 1
    assert "damaged" in caplog.text and "previous" in caplog.text
    (checkpoints.folder / "previous.pt.sha256").write_text("0" * 64)
    with pytest.raises(UserError, match="cannot resume"):
        checkpoints.load_resume_point()


def test_no_checkpoint_means_a_fresh_start(tmp_path) -> None:
    assert store(tmp_path).load_resume_point() is None
    assert CheckpointStore(None, torch.device("cpu")).load_resume_point() is None


def test_a_checkpoint_from_an_older_version_says_so(tmp_path) -> None:
    checkpoints = store(tmp_path)
    checkpoints.folder.mkdir(parents=True)
    torch.save({"epoch": 1}, checkpoints.folder / "last.pt")  # no .sha256: written before checksums
    with pytest.raises(UserError, match=r"older version.*No earlier good checkpoint; train the run again"):
        checkpoints.load_resume_point()
