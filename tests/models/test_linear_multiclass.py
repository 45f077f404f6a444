"""tfidf-lr and nbsvm on three or more classes: multinomial LR, NB one-vs-rest (one ratio vector and one
binary classifier per class), their saved arrays, and binary folders saved before classes were recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import THREE_CLASSES, one_line_user_error, tiny_reviews, tiny_three_class_reviews
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.linear import NBSVM, LinearModel, TfidfLogisticRegression
from imdb_sentiment.models.nb_ratio import NBOneVsRest, NBRatioScaler

TINY = {"min_df": 1, "max_features": None}


def _fit(model_class: type[LinearModel], train, valid, **params: object) -> LinearModel:
    model = model_class({**TINY, **params})
    model.fit(train, valid, FitContext(training=TrainingConfig(), seed=3))
    return model


@pytest.fixture(scope="module")
def three_class():
    return tiny_three_class_reviews(90, 0), tiny_three_class_reviews(30, 1), tiny_three_class_reviews(60, 2)


@pytest.mark.parametrize("model_class", [NBSVM, TfidfLogisticRegression], ids=["nbsvm", "tfidf-lr"])
def test_three_classes_are_each_learned(model_class: type[LinearModel], three_class) -> None:
    train, valid, test = three_class
    model = _fit(model_class, train, valid)
    assert model.classes == THREE_CLASSES
    predicted = model.predict(test.texts)
    assert (predicted == test.labels).mean() > 0.9  # chance is 1/3
    for label in range(3):  # every class, not just the two sentiment poles, is recognised
        assert (predicted[test.labels == label] == label).mean() > 0.8, THREE_CLASSES.names[label]


def test_tfidf_lr_is_multinomial_for_three_classes(three_class) -> None:
    train, valid, _ = three_class
    classifier = _fit(TfidfLogisticRegression, train, valid).pipeline_[-1]
    assert classifier.solver == "lbfgs" and classifier.coef_.shape[0] == 3


def test_nbsvm_one_vs_rest_is_one_binary_nbsvm_per_class(three_class) -> None:
    """Class k's ratio and classifier are those of a binary NBSVM of class k against the rest, and the
    probabilities are their sigmoids, normalised."""
    train, valid, test = three_class
    model = _fit(NBSVM, train, valid, refit_on_train_and_valid=False)
    vectorizer, head = model.pipeline_[0], model.pipeline_[-1]
    assert isinstance(head, NBOneVsRest)
    features, test_features = vectorizer.transform(train.texts), vectorizer.transform(test.texts)
    by_hand = []
    for label in range(3):
        one_vs_rest = (train.labels == label).astype(int)
        scaler = NBRatioScaler(alpha=1.0).fit(features, one_vs_rest)
        classifier = LogisticRegression(C=0.1, solver="liblinear", dual=True, max_iter=1000, random_state=3)
        classifier.fit(scaler.transform(features), one_vs_rest)
        np.testing.assert_array_equal(head.ratios_[label], scaler.ratio_)
        np.testing.assert_allclose(head.weights_[label], classifier.coef_[0], rtol=1e-12)
        by_hand.append(classifier.predict_proba(scaler.transform(test_features))[:, 1])
    by_hand = np.column_stack(by_hand)
    np.testing.assert_allclose(model.predict_proba(test.texts), by_hand / by_hand.sum(1, keepdims=True), rtol=1e-6)


def test_one_vs_rest_probabilities_survive_extreme_decisions() -> None:
    """Every class far below its boundary: the normalised sigmoids still make a distribution (no 0 / 0)."""
    head = NBOneVsRest(LogisticRegression()).set_weights(
        np.ones((3, 2), np.float32), np.ones((3, 2)), np.array([-2000.0, -2001.0, -2002.0])
    )
    probabilities = head.predict_proba(np.array([[1.0, 0.0]]))
    assert np.isfinite(probabilities).all() and probabilities.argmax() == 0
    np.testing.assert_allclose(probabilities.sum(), 1.0)
    moderate = np.array([0.3, -1.0, 0.5])  # and where nothing underflows, exactly the normalised sigmoids
    head.set_weights(np.zeros((3, 2), np.float32), np.zeros((3, 2)), moderate)
    np.testing.assert_allclose(
        head.predict_proba(np.array([[1.0, 0.0]]))[0], expit(moderate) / expit(moderate).sum()
    )


@pytest.mark.parametrize("model_class", [NBSVM, TfidfLogisticRegression], ids=["nbsvm", "tfidf-lr"])
def test_three_class_save_writes_one_row_per_class_and_loads(model_class, three_class, tmp_path: Path) -> None:
    train, valid, test = three_class
    model = _fit(model_class, train, valid)
    model.save(tmp_path / "model")
    width = len(model.pipeline_[0].vocabulary_)
    assert np.load(tmp_path / "model" / "coef.npy", allow_pickle=False).shape == (3, width)
    assert np.load(tmp_path / "model" / "intercept.npy", allow_pickle=False).shape == (3,)
    if model_class is NBSVM:  # the three ratio vectors, as a plain array
        assert np.load(tmp_path / "model" / "nb_ratio.npy", allow_pickle=False).shape == (3, width)
    loaded = SentimentModel.load(tmp_path / "model")
    assert loaded.classes == THREE_CLASSES
    np.testing.assert_array_equal(loaded.predict_proba(test.texts), model.predict_proba(test.texts))
    assert loaded.num_parameters() == model.num_parameters() == 3 * width + 3


def test_arrays_of_another_number_of_classes_are_refused(three_class, tmp_path: Path) -> None:
    train, valid, _ = three_class
    folder = tmp_path / "model"
    _fit(NBSVM, train, valid).save(folder)
    ratios = np.load(folder / "nb_ratio.npy")
    np.save(folder / "nb_ratio.npy", ratios[:2])  # two ratio vectors for three classes
    one_line_user_error(lambda: SentimentModel.load(folder), "nb_ratio.npy holds", f"shape (3, {ratios.shape[1]})")
    np.save(folder / "nb_ratio.npy", ratios)
    meta = json.loads((folder / "model.json").read_text())
    meta["classes"]["names"].append("very positive")  # model.json says four classes, the arrays hold three
    (folder / "model.json").write_text(json.dumps(meta))
    one_line_user_error(lambda: SentimentModel.load(folder), "classes.npy holds", "expected numbers of shape (4,)")


@pytest.mark.parametrize("model_class", [NBSVM, TfidfLogisticRegression], ids=["nbsvm", "tfidf-lr"])
def test_binary_folder_without_recorded_classes_loads_and_predicts_the_same(model_class, tmp_path: Path) -> None:
    """A folder saved before model.json recorded classes: the binary sentiment task, identical predictions."""
    train, valid, test = tiny_reviews(60, 0), tiny_reviews(20, 1), tiny_reviews(20, 2)
    model = _fit(model_class, train, valid)
    folder = tmp_path / "model"
    model.save(folder)
    meta = json.loads((folder / "model.json").read_text())
    del meta["classes"]
    (folder / "model.json").write_text(json.dumps(meta))
    assert np.load(folder / "coef.npy").shape == (1, len(model.pipeline_[0].vocabulary_))
    loaded = SentimentModel.load(folder)
    assert loaded.classes.is_sentiment
    np.testing.assert_array_equal(loaded.predict_proba(test.texts), model.predict_proba(test.texts))


def test_tfidf_lr_refit_starts_from_the_train_fit_and_reaches_the_same_model(three_class) -> None:
    """The multinomial refit on train + validation starts from the train-only weights (fewer lbfgs
    iterations) and lands where a fit from zero lands."""
    train, valid, test = three_class
    model = _fit(TfidfLogisticRegression, train, valid)
    warm = model.pipeline_[-1]
    features = model.pipeline_[0].transform(train.texts + valid.texts)
    labels = np.concatenate([train.labels, valid.labels])
    cold = LogisticRegression(C=warm.C, max_iter=1000, tol=1e-8).fit(features, labels)
    assert warm.warm_start and warm.n_iter_[0] < cold.n_iter_[0]
    expected = cold.predict_proba(model.pipeline_[0].transform(test.texts))
    np.testing.assert_allclose(model.predict_proba(test.texts), expected, atol=1e-2)  # lbfgs' default tol stops
    assert model.predict(test.texts).tolist() == expected.argmax(1).tolist()  # a little short of the optimum
