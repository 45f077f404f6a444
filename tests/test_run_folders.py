"""The run-folder object and the one integrity format: manifests written at save and verified at
load, a saved folder tied to its run, the one JSON reader, paths that must stay inside a folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import one_line_user_error

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import (
    MANIFEST_FILE,
    digest_of,
    file_digests,
    path_inside,
    read_json,
    same_file,
    verify_manifest,
    write_manifest,
)
from imdb_sentiment.runs import RunFolder


class _Saved:
    name = "nbsvm"

    def save(self, directory: Path) -> None:
        (directory / "weights").mkdir(parents=True)
        (directory / "model.json").write_text('{"name": "nbsvm", "params": {}}')
        (directory / "weights" / "coef.npy").write_bytes(b"\x93NUMPY fake")


def _run(folder: Path, seed: int = 0) -> RunFolder:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"# a comment\nmodel:\n  name: nbsvm\nseed: {seed}\n")
    run = RunFolder(folder)
    run.save_model(_Saved())
    return run


# ---------------------------------------------------------------------------------------- manifests
def test_a_manifest_lists_every_file_and_catches_a_missing_or_altered_one(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    manifest = json.loads((run.model_dir / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {"model.json", "weights/coef.npy"}
    assert manifest["model"] == "nbsvm" and manifest["config_sha256"] == run.config_digest()
    assert run.verify_model() == manifest
    assert digest_of(manifest["files"]) == digest_of(file_digests(run.model_dir))

    (run.model_dir / "weights" / "coef.npy").write_bytes(b"other")
    one_line_user_error(run.verify_model, "coef.npy was altered after saving", "train it again")
    (run.model_dir / "weights" / "coef.npy").unlink()
    one_line_user_error(run.verify_model, "coef.npy is missing")
    (run.model_dir / MANIFEST_FILE).write_text('{"format": "something else", "files": {}}')
    one_line_user_error(run.verify_model, "is not a manifest")
    (run.model_dir / MANIFEST_FILE).unlink()
    assert run.verify_model() is None  # saved before manifests existed: nothing to check against


def test_a_model_is_tied_to_its_run_config_not_to_its_layout(tmp_path: Path) -> None:
    run, other = _run(tmp_path / "a"), _run(tmp_path / "b", seed=1)
    run.config_file.write_text("model: {name: nbsvm}   # the same config, written differently\nseed: 0\n")
    assert run.verify_model() is not None
    other.model_dir.rename(tmp_path / "b-model")
    run.model_dir.rename(tmp_path / "a-model")
    (tmp_path / "b-model").rename(run.model_dir)  # another run's model/, manifest and all
    one_line_user_error(run.verify_model, "belongs to another run", "model nbsvm", str(run.config_file))


def test_a_folder_manifest_without_a_tie_still_verifies(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    write_manifest(folder)
    assert verify_manifest(folder, "train again")["files"].keys() == {"model.safetensors"}
    assert RunFolder(tmp_path).verify_saved(folder, "train again") is not None


# -------------------------------------------------------------------------------------- run.json
def test_status_is_recorded_in_place_when_the_disk_refuses_new_files(tmp_path, monkeypatch) -> None:
    import imdb_sentiment.runs as runs

    run = RunFolder(tmp_path)
    run.write_status("running", started="now")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise UserError("Disk full while writing run.json")

    monkeypatch.setattr(runs, "write_json_atomic", disk_full)
    run.write_status("failed", error="OSError: disk full")
    assert run.status()["status"] == "failed" and run.status()["started"] == "now"


# ------------------------------------------------------------------------------------------- JSON
@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "does not exist"), ("{not json", "is not valid JSON"), ("[1, 2]", "holds a JSON list, not an object"),
     ("[" * 100_000, "is not valid JSON"), (b"\xff\xfe{}", "is not valid JSON")],
    ids=["missing", "syntax", "list", "deep", "bytes"],
)  # fmt: skip
def test_the_json_reader_fails_in_one_line_naming_the_file(tmp_path: Path, content, fragment: str) -> None:
    path = tmp_path / "metrics.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    message = one_line_user_error(lambda: read_json(path, "train it again"), str(path), fragment)
    assert message.endswith("; train it again.") and len(message) < 400


# ------------------------------------------------------------------------------------------ paths
def test_a_path_inside_refuses_links_that_lead_out(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "plots").mkdir(parents=True)
    outside.mkdir()
    assert path_inside(run, "evaluations") == run / "evaluations"
    (run / "inner").symlink_to(run / "plots")  # a link that stays inside is fine
    assert path_inside(run, "inner") == run / "inner"
    (run / "evaluations").symlink_to(outside)
    one_line_user_error(lambda: path_inside(run, "evaluations"), "is a link that leads out of", str(outside))
    (run / "dangling").symlink_to(tmp_path / "nowhere")
    one_line_user_error(lambda: path_inside(run, "dangling"), "leads out of")


def test_same_file_sees_through_links(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("id,text\n")
    (tmp_path / "soft.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    (tmp_path / "other.csv").write_text("id,text\n")
    assert same_file(data, tmp_path / "soft.csv") and same_file(data, tmp_path / "hard.csv")
    assert same_file(tmp_path / "new.csv", tmp_path / "sub" / ".." / "new.csv")  # neither exists yet
    assert not same_file(data, tmp_path / "other.csv") and not same_file(data, tmp_path / "new.csv")
