from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.linear import NBSVM, LinearModel, NBSVMParams, TfidfLogisticRegression
from imdb_sentiment.models.nb_ratio import NBRatioScaler


def test_nb_ratio_matches_hand_computation() -> None:
    # Two features; feature 0 appears in both positives, feature 1 in the negative only.
    features = sparse.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32))
    labels = np.array([1, 1, 0])
    scaler = NBRatioScaler(alpha=1.0).fit(features, labels)
    p = np.array([2 + 1, 0 + 1]) / 4  # positive counts + alpha, normalised
    q = np.array([0 + 1, 1 + 1]) / 3
    np.testing.assert_allclose(scaler.ratio_, np.log(p / q), rtol=1e-6)
    np.testing.assert_allclose(scaler.transform(features).toarray()[2], [0, np.log(p[1] / q[1])], rtol=1e-6)


def _dataset(texts: list[str], labels: list[int]) -> TextDataset:
    return TextDataset(texts, np.array(labels))


def _fit(model: LinearModel, train: TextDataset, valid: TextDataset) -> FitContext:
    context = FitContext(training=TrainingConfig())
    model.fit(train, valid, context)
    return context


# --------------------------------------------------------------------------------------------------
# Choosing C on the validation split: data where the right choice is known


@pytest.mark.parametrize("model_class", [NBSVM, TfidfLogisticRegression], ids=["nbsvm", "tfidf-lr"])
@pytest.mark.parametrize("grid", [[1e-6, 1.0], [1.0, 1e-6]], ids=["absurd-first", "absurd-last"])
def test_c_grid_rejects_a_c_too_small_to_fit_the_data(model_class: type[LinearModel], grid: list[float]) -> None:
    # "movie" is in every negative review but also in the five "superb movie" positives. A model
    # shrunk to almost nothing (C=1e-6) keeps only frequency differences, where the common negative
    # "movie" outweighs the rare "superb", so it calls "superb movie" negative; C=1 fits the
    # training reviews and gets it right. Ties go to the first C of the grid, so with the absurd C
    # first only a real accuracy difference makes C=1 win.
    train = _dataset(["superb movie"] * 5 + ["great"] * 35 + ["boring movie"] * 40, [1] * 40 + [0] * 40)
    valid = _dataset(["superb movie", "boring movie", "great", "boring"], [1, 0, 1, 0])
    model = model_class({"min_df": 1, "max_features": None, "ngram_max": 1, "C_grid": grid})
    context = _fit(model, train, valid)
    accuracy = {row["C"]: row["valid_accuracy"] for row in context.history}
    assert [row["C"] for row in context.history] == grid
    assert accuracy == {1e-6: 0.75, 1.0: 1.0}
    assert context.extra_metrics["chosen_C"] == 1.0
    assert context.extra_metrics["valid_accuracy"] == 1.0
    assert model.predict(["superb movie", "boring movie"]).tolist() == [1, 0]


@pytest.mark.parametrize("grid", [[0.1, 100.0], [100.0, 0.1]], ids=["strong-first", "strong-last"])
def test_c_grid_prefers_strong_regularisation_on_noisy_labels(grid: list[float]) -> None:
    # Three "good fine film" reviews are mislabelled negative. C=100 memorises them through "fine"
    # and then calls the (correctly labelled) validation review "good fine film" negative; C=0.1
    # cannot afford that and keeps trusting "good".
    train = _dataset(
        ["good film"] * 10 + ["bad film"] * 10 + ["good fine film"] * 3, [1] * 10 + [0] * 10 + [0] * 3
    )
    valid = _dataset(["good fine film", "good film", "bad film", "bad fine film"], [1, 1, 0, 0])
    model = NBSVM({"min_df": 1, "max_features": None, "ngram_max": 1, "C_grid": grid})
    context = _fit(model, train, valid)
    assert {row["C"]: row["valid_accuracy"] for row in context.history} == {0.1: 1.0, 100.0: 0.75}
    assert context.extra_metrics["chosen_C"] == 0.1


# --------------------------------------------------------------------------------------------------
# Saving and loading without pickle


def _tiny_reviews_model(model_class: type[LinearModel], tiny_reviews: list, **params: object) -> LinearModel:
    labelled = [review for review in tiny_reviews if review.label >= 0]
    train = _dataset([r.text for r in labelled[::2]], [r.label for r in labelled[::2]])
    valid = _dataset([r.text for r in labelled[1::2]], [r.label for r in labelled[1::2]])
    model = model_class({"min_df": 1, **params})
    _fit(model, train, valid)
    return model


PROBE_TEXTS = [
    "A wonderful, brilliant film!",
    "awful and boring... the worst",
    "zzyzx qwertyuiop never-seen-words",  # every word unseen in training
    "",
    "café déjà vu :) !!! ??",
    "THE MOVIE WAS GREAT BUT THE ENDING WAS TERRIBLE " * 20,
    "it's not great, it isn't awful",
]

EXPECTED_FILES = {
    "nbsvm": ["classes.npy", "coef.npy", "intercept.npy", "linear.json", "model.json", "nb_ratio.npy",
              "vocabulary.json"],
    "tfidf-lr": ["classes.npy", "coef.npy", "idf.npy", "intercept.npy", "linear.json", "model.json",
                 "vocabulary.json"],
}  # fmt: skip


@pytest.mark.parametrize("model_class", [NBSVM, TfidfLogisticRegression], ids=["nbsvm", "tfidf-lr"])
def test_save_and_load_predict_the_same_probabilities(
    model_class: type[LinearModel], tiny_reviews: list, tmp_path: Path
) -> None:
    # A grid, so the C in use differs from params.C: the loaded classifier must keep the chosen one.
    model = _tiny_reviews_model(model_class, tiny_reviews, C_grid=[0.05, 3.0])
    folder = tmp_path / "model"
    model.save(folder)
    assert sorted(path.name for path in folder.iterdir()) == EXPECTED_FILES[model.name]
    for array_file in folder.glob("*.npy"):
        assert np.load(array_file, allow_pickle=False).dtype.kind in "iuf"

    loaded = SentimentModel.load(folder)
    assert type(loaded) is model_class
    np.testing.assert_allclose(loaded.predict_proba(PROBE_TEXTS), model.predict_proba(PROBE_TEXTS), rtol=0, atol=0)
    assert loaded.predict_proba(PROBE_TEXTS).shape == (len(PROBE_TEXTS), 2)
    assert loaded.num_parameters() == model.num_parameters() == len(model.pipeline_[0].vocabulary_) + 1
    assert loaded.pipeline_[-1].C == model.pipeline_[-1].C

    again = tmp_path / "again"  # a loaded model saves the very same files
    loaded.save(again)
    for path in folder.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


class _CreatesMarker:
    """Unpickling this runs ``open(marker, "w")``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _malicious_pickle(marker: Path) -> bytes:
    payload = pickle.dumps(_CreatesMarker(marker))
    control = marker.with_name(marker.name + ".control")
    pickle.loads(pickle.dumps(_CreatesMarker(control))).close()
    assert control.exists(), "the payload must really run code when unpickled"
    control.unlink()
    return payload


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    import joblib

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model folder was unpickled")

    for owner, name in ((pickle, "load"), (pickle, "loads"), (joblib, "load")):
        monkeypatch.setattr(owner, name, refuse)


def test_old_pickled_run_is_refused_without_unpickling(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text(
        json.dumps({"name": "nbsvm", "params": NBSVMParams().model_dump(mode="json")})
    )
    marker = tmp_path / "pwned"
    (folder / "pipeline.joblib").write_bytes(_malicious_pickle(marker))
    with pytest.raises(UserError) as info:
        SentimentModel.load(folder)
    message = str(info.value)
    assert "old unsafe format" in message and "pipeline.joblib" in message and "Retrain it" in message
    assert not marker.exists()


def test_old_pickled_run_never_reaches_pickle(tmp_path: Path, no_unpickling: None) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"name": "tfidf-lr", "params": {}}))
    (folder / "pipeline.joblib").write_bytes(b"anything")
    with pytest.raises(UserError, match="old unsafe format"):
        SentimentModel.load(folder)


@pytest.fixture
def saved_nbsvm(tiny_reviews: list, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    _tiny_reviews_model(NBSVM, tiny_reviews).save(folder)
    return folder


def test_pickled_object_array_is_refused_without_unpickling(saved_nbsvm: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _CreatesMarker(marker)
    with open(saved_nbsvm / "coef.npy", "wb") as handle:
        np.save(handle, payload, allow_pickle=True)
    with pytest.raises(UserError, match=r"coef\.npy is not a plain numeric array"):
        SentimentModel.load(saved_nbsvm)
    assert not marker.exists()


def test_raw_pickle_under_an_npy_name_is_refused(saved_nbsvm: Path, tmp_path: Path, no_unpickling: None) -> None:
    marker = tmp_path / "pwned"
    (saved_nbsvm / "nb_ratio.npy").write_bytes(pickle.dumps(_CreatesMarker(marker)))
    with pytest.raises(UserError, match=r"nb_ratio\.npy is not a plain numeric array"):
        SentimentModel.load(saved_nbsvm)
    assert not marker.exists()


def test_array_of_the_wrong_shape_is_a_user_error(saved_nbsvm: Path) -> None:
    np.save(saved_nbsvm / "coef.npy", np.zeros((1, 3)))
    with pytest.raises(UserError, match=r"coef\.npy holds float64 \(1, 3\).*corrupt"):
        SentimentModel.load(saved_nbsvm)


def test_settings_that_disagree_with_model_json_are_refused(saved_nbsvm: Path) -> None:
    meta = json.loads((saved_nbsvm / "model.json").read_text())
    meta["params"]["ngram_max"] = 2  # the vocabulary holds trigrams: predictions would be wrong
    (saved_nbsvm / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"vectorizer settings in linear\.json do not match model\.json"):
        SentimentModel.load(saved_nbsvm)


def test_missing_weights_are_a_user_error(saved_nbsvm: Path) -> None:
    (saved_nbsvm / "linear.json").unlink()
    with pytest.raises(UserError, match=r"cannot be loaded: linear\.json is missing"):
        SentimentModel.load(saved_nbsvm)


def test_cli_predict_refuses_an_old_pickled_run(tmp_path: Path, capsys) -> None:
    """The real console script: a run trained before this format gets one line and exit code 2 (the
    run is trained and first read in this process: only the refusal needs the real one)."""
    from helpers import run_cli, write_tiny_parquet_imdb

    script = Path(sys.executable).parent / "imdb-sentiment"
    write_tiny_parquet_imdb(tmp_path / "imdb")
    code, _, err = run_cli(["train", "nbsvm", "--data", str(tmp_path / "imdb"), "--output-dir",
                            str(tmp_path / "runs"), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    code, _, err = run_cli(["predict", str(run_dir), "great wonderful film", "awful boring film"], capsys)
    assert code == 0, err

    model_dir = run_dir / "model"
    for path in model_dir.iterdir():
        if path.name != "model.json":
            path.unlink()
    marker = tmp_path / "pwned"
    (model_dir / "pipeline.joblib").write_bytes(_malicious_pickle(marker))
    refused = subprocess.run(
        [str(script), "predict", str(run_dir), "great wonderful film"], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert "old unsafe format" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not marker.exists()
