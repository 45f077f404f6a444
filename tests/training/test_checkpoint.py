"""Checkpoints: no code runs from a crafted file, damage is detected, the previous one is used."""

from __future__ import annotations

import hashlib
import logging
import os
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


class _StopAtRename:
    """os.replace that raises KeyboardInterrupt instead of doing its ``stop_at``-th call (from 0)."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at, self.calls, self.real = stop_at, 0, os.replace

    def __call__(self, source, target) -> None:
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        self.real(source, target)


@pytest.mark.parametrize("name", ["resume point", "best.pt"])
def test_a_save_stopped_at_any_rename_leaves_every_checkpoint_loadable(tmp_path, monkeypatch, name) -> None:
    def save(checkpoints: CheckpointStore, epoch: int) -> None:
        state = {"epoch": epoch, "weights": torch.ones(3) * epoch}
        if name == "best.pt":
            checkpoints.save(state, "best.pt")
        else:
            checkpoints.save_resume_point(state)

    stop_at, completed = 0, False
    while not completed:
        checkpoints = store(tmp_path / str(stop_at))
        save(checkpoints, 1)
        save(checkpoints, 2)
        stopper = _StopAtRename(stop_at)
        monkeypatch.setattr(os, "replace", stopper)
        try:
            save(checkpoints, 3)
            completed = True
        except KeyboardInterrupt:
            pass
        finally:
            monkeypatch.setattr(os, "replace", stopper.real)
        if name == "best.pt":
            newest = checkpoints.load("best.pt")["epoch"]  # a damaged file raises UserError
        else:
            last, previous = checkpoints.load("last.pt"), checkpoints.load("previous.pt")
            newest = checkpoints.load_resume_point()["epoch"]
            # Between its two renames last.pt is briefly absent; previous.pt then holds the newest.
            assert (last or previous)["epoch"] == newest and previous["epoch"] in (1, 2), stop_at
        assert newest == 3 if completed else newest in (2, 3), stop_at
        assert not list(checkpoints.folder.glob("*.tmp")), stop_at
        stop_at += 1
    assert stop_at > 3  # the save has several renames, and each was interrupted once


def test_no_checkpoint_means_a_fresh_start(tmp_path) -> None:
    assert store(tmp_path).load_resume_point() is None
    assert CheckpointStore(None, torch.device("cpu")).load_resume_point() is None


def test_a_checkpoint_from_an_older_version_says_so(tmp_path) -> None:
    checkpoints = store(tmp_path)
    checkpoints.folder.mkdir(parents=True)
    torch.save({"epoch": 1}, checkpoints.folder / "last.pt")  # no .sha256: written before checksums
    with pytest.raises(UserError, match=r"older version.*No earlier good checkpoint; train the run again"):
        checkpoints.load_resume_point()


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),  # a full disk
        OSError(27, "File too large"),  # EFBIG: ulimit -f
        OSError(30, "Read-only file system"),  # EROFS
    ],
)
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_last_one_stays(
    tmp_path, monkeypatch, failure
) -> None:
    store = CheckpointStore(tmp_path, torch.device("cpu"))
    store.save_resume_point({"step": 1})

    def failing_save(state, path) -> None:
        Path(path).write_bytes(b"half")
        raise failure

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(UserError) as error:
        store.save_resume_point({"step": 2})
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message and "--resume" in message
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.pt", "last.pt.sha256"]  # no temp file
    monkeypatch.undo()
    assert store.load_resume_point() == {"step": 1}
