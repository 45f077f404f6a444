"""The ensemble on three classes: a multinomial stacker, the mean, and members whose classes differ refused."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import THREE_CLASSES, NullCapture, one_line_user_error, run_cli, tiny_three_class_reviews

from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.data.splits import load_data
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.ensemble import EnsembleModel

HELD_OUT = {"min_df": 1, "max_features": None, "refit_on_train_and_valid": False}
REVERSED = ["positive", "neutral", "negative"]


def _train(root, name: str, model: str, data: dict) -> None:
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"name": name, "model": {"name": model, "params": HELD_OUT}, "data": data}))
    code, _, err = run_cli(["train", str(config), "--output-dir", str(root / "runs"), "--quiet"], NullCapture())
    assert code == 0, err


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory):
    """nbsvm and tfidf-lr runs on a negative / neutral / positive CSV, and an nbsvm run on the same CSV
    with the classes listed in another order."""
    root = tmp_path_factory.mktemp("ensemble3")
    reviews = tiny_three_class_reviews(150, 0)
    names = [THREE_CLASSES.name_of(label) for label in reviews.labels]
    pd.DataFrame({"text": reviews.texts, "label": names}).to_csv(root / "reviews.csv", index=False)
    data = {"path": str(root / "reviews.csv")}
    _train(root, "nbsvm", "nbsvm", data)
    _train(root, "tfidf", "tfidf-lr", data)
    _train(root, "reversed", "nbsvm", {**data, "labels": REVERSED})
    return root, {path.name.split("-")[0]: path for path in (root / "runs").iterdir()}


def _config(root, runs: list, combine: str = "stacker", **data) -> dict:
    members = [{"run": str(run)} for run in runs]
    return {"name": "ensemble", "model": {"name": "ensemble", "params": {"members": members, "combine": combine}},
            "data": {"path": str(root / "reviews.csv"), **data}}  # fmt: skip


def _fitted(config: dict) -> tuple[EnsembleModel, object]:
    config = configure(config)
    data = load_data(config.data)
    ensemble = EnsembleModel(config.model.params)
    return ensemble.fit(data.train, data.valid, FitContext(training=config.training)), data


def test_a_three_class_stacker_is_multinomial_and_survives_save_and_load(member_runs, tmp_path) -> None:
    root, runs = member_runs
    ensemble, data = _fitted(_config(root, [runs["nbsvm"], runs["tfidf"]]))
    assert ensemble.classes == THREE_CLASSES
    assert ensemble.weights.shape == (3, 6) and ensemble.intercept.shape == (3,)  # 3 log-probabilities a member
    probabilities = ensemble.predict_proba(data.test.texts)
    assert probabilities.shape == (len(data.test), 3)
    np.testing.assert_allclose(probabilities.sum(1), 1.0)
    assert (probabilities.argmax(1) == data.test.labels).mean() > 0.8  # chance: 1/3
    ensemble.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "ensemble.json").read_text())
    assert np.shape(saved["weights"]) == (3, 6) and len(saved["intercept"]) == 3
    loaded = SentimentModel.load(tmp_path / "model")
    assert loaded.classes == THREE_CLASSES
    np.testing.assert_array_equal(loaded.predict_proba(data.test.texts), probabilities)
    assert loaded.num_parameters() == sum(m.num_parameters() for m in loaded.members) + 3 * 6 + 3

    saved["weights"] = saved["weights"][:2]  # weights for another number of classes: one line, refused
    (tmp_path / "model" / "ensemble.json").write_text(json.dumps(saved))
    one_line_user_error(lambda: SentimentModel.load(tmp_path / "model"), "stacker's weights do not fit 2 members")


def test_a_three_class_mean_is_the_average_of_the_members(member_runs) -> None:
    root, runs = member_runs
    ensemble, data = _fitted(_config(root, [runs["nbsvm"], runs["tfidf"]], "mean"))
    texts = data.test.texts[:10]
    members = [SentimentModel.load(runs[name] / "model").predict_proba(texts) for name in ("nbsvm", "tfidf")]
    np.testing.assert_allclose(ensemble.predict_proba(texts), (members[0] + members[1]) / 2, rtol=1e-12)


def test_members_with_classes_in_another_order_are_refused_before_a_run_folder(member_runs, capsys) -> None:
    root, runs = member_runs
    config = root / "mixed.yaml"
    config.write_text(yaml.safe_dump(_config(root, [runs["nbsvm"], runs["reversed"]])))
    output = root / "refused"
    code, _, err = run_cli(["train", str(config), "--output-dir", str(output)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "model.params.members.1.run" in err and "[positive, neutral, negative]" in err, err
    assert not output.exists() or not any(output.iterdir())
    # Both members listing the classes the other way round: their data settings are not the ensemble's.
    one_line_user_error(
        lambda: configure(_config(root, [runs["reversed"], runs["reversed"]])), "members.0.run", "data.labels"
    )
    # ... unless the ensemble lists them the same way too.
    configure(_config(root, [runs["reversed"], runs["reversed"]], labels=REVERSED))


def test_fit_refuses_a_member_whose_classes_are_not_the_data_s(member_runs) -> None:
    """The same reviews under other class names (data.json's split digests agree): fit still refuses."""
    root, runs = member_runs
    config = configure(_config(root, [runs["nbsvm"], runs["tfidf"]]))
    data = load_data(config.data)
    renamed = LabelSpace(("bad", "meh", "good"))
    train, valid = replace(data.train, classes=renamed), replace(data.valid, classes=renamed)
    ensemble = EnsembleModel(config.model.params)
    one_line_user_error(
        lambda: ensemble.fit(train, valid, FitContext(training=config.training)),
        "model.params.members.0",
        "[negative, neutral, positive]",
        "[bad, meh, good]",
    )


def test_run_members_whose_classes_the_data_no_longer_has_are_refused_before_a_run_folder(
    tmp_path, capsys
) -> None:
    """Same data settings, but the table was relabelled since the member was trained: refused once the
    data is read, in one line, before a run folder."""
    reviews = tiny_three_class_reviews(60, 0)
    names = [THREE_CLASSES.name_of(label) for label in reviews.labels]
    pd.DataFrame({"text": reviews.texts, "label": names}).to_csv(tmp_path / "reviews.csv", index=False)
    _train(tmp_path, "nbsvm", "nbsvm", {"path": str(tmp_path / "reviews.csv")})
    (run,) = (tmp_path / "runs").iterdir()
    relabelled = ["mixed" if name == "neutral" else name for name in names]
    pd.DataFrame({"text": reviews.texts, "label": relabelled}).to_csv(tmp_path / "reviews.csv", index=False)
    config = tmp_path / "ensemble.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, [run, run])))
    output = tmp_path / "refused"
    code, _, err = run_cli(["train", str(config), "--output-dir", str(output)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "model.params.members.0.run" in err and "[mixed, negative, positive]" in err, err
    assert not output.exists() or not any(output.iterdir())
