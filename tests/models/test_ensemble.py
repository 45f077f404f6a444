"""The ensemble model over real run folders: same-split check, stacker on validation, JSON save/load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from helpers import one_line_user_error, run_cli, write_tiny_parquet_imdb

from imdb_sentiment.io_utils import write_manifest
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.ensemble import EnsembleModel
from imdb_sentiment.runs import RunFolder

NBSVM = {"name": "nbsvm", "params": {"min_df": 1, "max_features": None, "refit_on_train_and_valid": False}}
FASTTEXT = {"name": "fasttext", "params": {"embedding_dim": 8, "max_length": 24, "min_freq": 1}}


class _Quiet:
    def readouterr(self):
        class Captured:
            out = err = ""

        return Captured()


def _train(root, name: str, model: dict, *extra: str) -> None:
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"name": name, "model": model, "training": {"epochs": 2, "threads": 1}}))
    code, _, err = run_cli(
        [
            "train",
            str(config),
            "--data",
            str(root / "imdb"),
            "--output-dir",
            str(root / "runs"),
            "--quiet",
            *extra,
        ],
        _Quiet(),
    )
    assert code == 0, err


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    write_tiny_parquet_imdb(root / "imdb", size=80)
    _train(root, "nbsvm", NBSVM)
    _train(root, "fasttext", FASTTEXT)
    runs = {path.name.split("-")[0]: path for path in (root / "runs").iterdir()}
    return root, runs


def _ensemble_config(root, members: list[str], combine: str = "stacker") -> dict:
    return {
        "name": "ensemble",
        "model": {"name": "ensemble", "params": {"members": [{"run": m} for m in members], "combine": combine}},
        "data": {"path": str(root / "imdb")},
    }


def test_ensemble_of_run_folders_trains_saves_loads_and_evaluates(member_runs, capsys) -> None:
    root, runs = member_runs
    config = root / "ensemble.yaml"
    config.write_text(yaml.safe_dump(_ensemble_config(root, [str(runs["nbsvm"]), str(runs["fasttext"])])))
    code, _, err = run_cli(["train", str(config), "--output-dir", str(root / "ens-runs"), "--quiet"], capsys)
    assert code == 0, err
    (run_dir,) = (root / "ens-runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.8
    assert [member["model"] for member in metrics["details"]["members"]] == ["nbsvm", "fasttext"]
    saved = json.loads((run_dir / "model" / "ensemble.json").read_text())
    assert len(saved["weights"]) == 2 and all(len(m["model_files_sha256"]) == 64 for m in saved["members"])
    assert not list((run_dir / "model").glob("*.pkl")) and not list((run_dir / "model").glob("*.joblib"))

    code, out, err = run_cli(["evaluate", str(run_dir)], capsys)
    assert code == 0 and "accuracy" in out, err

    # A member changed after the ensemble was fitted: loading says so in one line.
    copy = root / "copy"
    shutil.copytree(run_dir, copy)
    member_model = runs["nbsvm"] / "model" / "model.json"
    original = member_model.read_text()
    member_model.write_text(original.replace('"C": 0.1', '"C": 0.2').replace('"C": 8.0', '"C": 9.0'))
    try:
        one_line_user_error(lambda: SentimentModel.load(copy / "model"), "member 0", "model.json was altered")
        write_manifest(member_model.parent, **RunFolder(runs["nbsvm"]).tie("nbsvm"))  # as if retrained
        one_line_user_error(lambda: SentimentModel.load(copy / "model"), "member 0", "changed since")
    finally:
        member_model.write_text(original)
        write_manifest(member_model.parent, **RunFolder(runs["nbsvm"]).tie("nbsvm"))


def test_mean_is_the_average_of_the_members(member_runs) -> None:
    root, runs = member_runs
    from imdb_sentiment.data.splits import load_data

    config = configure(_ensemble_config(root, [str(runs["nbsvm"]), str(runs["fasttext"])], "mean"))
    data = load_data(config.data)
    from imdb_sentiment.models.base import FitContext

    ensemble = EnsembleModel(config.model.params).fit(data.train, data.valid, FitContext(training=config.training))
    texts = data.test.texts[:10]
    members = [SentimentModel.load(runs[name] / "model").predict_proba(texts) for name in ("nbsvm", "fasttext")]
    np.testing.assert_allclose(ensemble.predict_proba(texts), (members[0] + members[1]) / 2, rtol=1e-6)


def test_members_from_another_split_are_refused(member_runs) -> None:
    root, runs = member_runs
    raw = _ensemble_config(root, [str(runs["nbsvm"]), str(runs["fasttext"])])
    raw["data"]["seed"] = 7
    one_line_user_error(lambda: configure(raw), "model.params.members.0.run", "another train/validation split",
                        "data.seed")  # fmt: skip


def test_a_stacker_refuses_a_member_refit_on_validation(member_runs) -> None:
    _root, runs = member_runs
    refit = {"model": "nbsvm", "params": {**NBSVM["params"], "refit_on_train_and_valid": True}}
    members = [refit, {"run": str(runs["fasttext"])}]
    one_line_user_error(
        lambda: configure({"model": {"name": "ensemble", "params": {"members": members}}}),
        "model.params.members.0.params.refit_on_train_and_valid",
    )
    missing = [{"run": "/no/such/run"}] * 2
    one_line_user_error(
        lambda: configure({"model": {"name": "ensemble", "params": {"members": missing}}}),
        "model.params.members.0.run",
        "not a finished run folder",
    )


def test_a_binary_ensemble_saved_without_classes_loads_and_predicts_the_same(member_runs, tmp_path) -> None:
    """An ensemble folder from before model.json recorded classes: sentiment, the same predictions."""
    root, runs = member_runs
    from imdb_sentiment.data.splits import load_data
    from imdb_sentiment.models.base import FitContext

    config = configure(_ensemble_config(root, [str(runs["nbsvm"]), str(runs["fasttext"])]))
    data = load_data(config.data)
    ensemble = EnsembleModel(config.model.params).fit(data.train, data.valid, FitContext(training=config.training))
    ensemble.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    del meta["classes"]
    (tmp_path / "model" / "model.json").write_text(json.dumps(meta))
    saved = json.loads((tmp_path / "model" / "ensemble.json").read_text())
    assert len(saved["weights"]) == 2 and isinstance(saved["intercept"], float)  # the binary format, as ever
    loaded = SentimentModel.load(tmp_path / "model")
    assert loaded.classes.is_sentiment
    texts = data.test.texts[:10]
    np.testing.assert_array_equal(loaded.predict_proba(texts), ensemble.predict_proba(texts))
