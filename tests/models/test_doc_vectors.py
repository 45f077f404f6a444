"""doc2vec (PV-DBOW over word n-grams): its corpus, its deterministic inference and its pickle-free save."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gensim.models.doc2vec
import numpy as np
import pytest
from helpers import tiny_reviews, tiny_three_class_reviews

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.doc_vectors import DocVectorClassifier
from imdb_sentiment.text.doc_vectors import ngrams

TINY = {"vector_size": 16, "epochs": 50, "min_count": 1, "sample": 0.0}


def unlabelled(size: int, seed: int) -> TextDataset:
    reviews = tiny_reviews(size, seed)
    return TextDataset(reviews.texts, np.full(size, -1))


def fit(params: dict | None = None, train: TextDataset | None = None, unsup: TextDataset | None = None,
        threads: int = 2) -> tuple[DocVectorClassifier, FitContext]:  # fmt: skip
    context = FitContext(training=TrainingConfig(threads=threads), seed=3, unsup=unsup, show_progress=False)
    model = DocVectorClassifier({**TINY, **(params or {})})
    return model.fit(train or tiny_reviews(200, 0), tiny_reviews(60, 1), context), context


@pytest.fixture(scope="module")
def fitted() -> DocVectorClassifier:
    return fit(unsup=unlabelled(200, 9))[0]


def test_ngrams_are_the_word_tokens_then_the_joined_bigrams() -> None:
    assert ngrams("Don't miss it!", 2) == ["don't", "miss", "it", "!", "don't_miss", "miss_it", "it_!"]
    assert ngrams("Don't miss it!", 1) == ["don't", "miss", "it", "!"]
    assert ngrams("", 3) == []


def test_it_learns_the_cue_words(fitted: DocVectorClassifier) -> None:
    test = tiny_reviews(100, 2)
    assert (fitted.predict(test.texts) == test.labels).mean() >= 0.85


def test_the_vectors_are_trained_on_train_and_unlabelled_reviews_only() -> None:
    train, unsup = tiny_reviews(80, 0), unlabelled(50, 9)
    assert fit({"epochs": 2}, train, unsup)[1].extra_metrics["corpus_reviews"] == 130
    assert fit({"epochs": 2, "use_unlabelled": False}, train, unsup)[1].extra_metrics["corpus_reviews"] == 80


def test_a_label_sorted_training_split_reaches_gensim_shuffled(monkeypatch: pytest.MonkeyPatch) -> None:
    """In label order, the falling learning rate would give each class its own vector scale."""
    real_build_vocab, corpora = gensim.models.doc2vec.Doc2Vec.build_vocab, []

    def recording(self, *args, **kwargs):
        corpora.append(Path(kwargs["corpus_file"]).read_text().splitlines())
        return real_build_vocab(self, *args, **kwargs)

    monkeypatch.setattr(gensim.models.doc2vec.Doc2Vec, "build_vocab", recording)
    reviews = tiny_reviews(100, 0)
    order = np.argsort(reviews.labels, kind="stable")
    in_label_order = TextDataset([reviews.texts[i] for i in order], reviews.labels[order])
    fit({"epochs": 1}, in_label_order)
    lines = corpora[0]
    assert sorted(lines) == sorted(" ".join(ngrams(text, 2)) for text in in_label_order.texts)
    first_half_negative = sum(
        line in {" ".join(ngrams(t, 2)) for t in in_label_order.texts[:50]} for line in lines[:50]
    )
    assert 10 <= first_half_negative <= 40, first_half_negative


def test_inference_does_not_depend_on_order_or_threads(fitted: DocVectorClassifier) -> None:
    texts = tiny_reviews(30, 4).texts
    forward = fitted.vectors(texts)
    np.testing.assert_array_equal(fitted.vectors(texts[::-1])[::-1], forward)
    fitted.threads = 1
    try:
        np.testing.assert_array_equal(fitted.vectors(texts), forward)
    finally:
        fitted.threads = 2


def test_inferred_classifier_features_fit_on_inferred_vectors() -> None:
    model, context = fit({"classifier_features": "inferred", "C_grid": [0.1, 10.0]})
    assert [row["C"] for row in context.history] == [0.1, 10.0]
    assert context.extra_metrics["chosen_C"] in (0.1, 10.0)
    test = tiny_reviews(100, 2)
    assert (model.predict(test.texts) == test.labels).mean() >= 0.85


@pytest.fixture()
def saved(fitted: DocVectorClassifier, tmp_path: Path) -> Path:
    fitted.save(tmp_path / "model")
    return tmp_path / "model"


def test_save_writes_no_pickle_and_loads_the_same_predictions(fitted: DocVectorClassifier, saved: Path) -> None:
    assert sorted(path.name for path in saved.iterdir()) == [
        "classes.npy", "coef.npy", "doc2vec.json", "intercept.npy", "model.json", "ngrams.json", "output.npy"
    ]  # fmt: skip
    texts = tiny_reviews(20, 5).texts
    np.testing.assert_array_equal(SentimentModel.load(saved).predict_proba(texts), fitted.predict_proba(texts))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: (folder / "ngrams.json").write_text('{"ngrams": ["a", "a"], "counts": [1, 1]}'),
         "distinct n-grams"),
        (lambda folder: np.save(folder / "output.npy", np.zeros((3, 16), dtype=np.float32)), "output.npy"),
        (lambda folder: np.save(folder / "output.npy", np.array([{}], dtype=object)), "not a plain numeric array"),
        (lambda folder: (folder / "doc2vec.json").write_text(json.dumps(
            {"format": "imdb-sentiment-doc2vec-1", "settings": {"vector_size": 99}})), "do not match model.json"),
        (lambda folder: (folder / "doc2vec.json").unlink(), "doc2vec.json"),
    ],
    ids=["repeated-ngram", "output-shape", "pickled-output", "settings", "missing-meta"],
)  # fmt: skip
def test_damaged_saved_models_are_refused_in_one_line(saved: Path, damage, message: str) -> None:
    damage(saved)
    with pytest.raises(UserError, match=message) as caught:
        SentimentModel.load(saved)
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def with_bag() -> DocVectorClassifier:
    return fit({"nb_ngrams": 2, "nb_max_features": None, "C": 0.1})[0]


def test_the_nb_bag_sits_beside_the_vectors_in_one_classifier(with_bag: DocVectorClassifier) -> None:
    bag_columns = len(with_bag.bag_.named_steps["vectorizer"].vocabulary_)
    assert with_bag.classifier_.coef_.shape == (1, bag_columns + 16)
    test = tiny_reviews(100, 2)
    assert (with_bag.predict(test.texts) == test.labels).mean() >= 0.95


def test_the_nb_bag_saves_as_json_and_arrays(with_bag: DocVectorClassifier, tmp_path: Path) -> None:
    with_bag.save(tmp_path / "model")
    assert {"bag.json", "nb_ratio.npy"} <= {path.name for path in (tmp_path / "model").iterdir()}
    texts = tiny_reviews(20, 5).texts
    loaded = SentimentModel.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(texts), with_bag.predict_proba(texts))
    np.save(tmp_path / "model" / "nb_ratio.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(UserError, match=r"nb_ratio\.npy"):
        SentimentModel.load(tmp_path / "model")


def test_the_nb_bag_on_three_classes_is_refused_naming_the_field() -> None:
    three = tiny_three_class_reviews(30, 0)
    with pytest.raises(UserError, match=r"^model\.params\.nb_ngrams: .*two classes") as caught:
        DocVectorClassifier({**TINY, "nb_ngrams": 2}).check_classes(three.classes)
    assert "\n" not in str(caught.value)


def test_inference_is_the_same_in_another_process(saved: Path) -> None:
    """gensim seeds inference with Python's salted hash(); the saved model must not."""
    script = (
        "import sys, numpy as np; from imdb_sentiment.models.base import SentimentModel; "
        f"m = SentimentModel.load({str(saved)!r}); "
        "p = m.predict_proba(['a fine film, great acting', '', 'zzz qqq']); "
        "sys.stdout.write(' '.join(f'{x:.9f}' for x in p.ravel()))"
    )  # fmt: skip
    outputs = {
        subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2")
    }  # fmt: skip
    assert len(outputs) == 1, outputs


def test_a_review_without_tokens_gets_one_vector(fitted: DocVectorClassifier) -> None:
    np.testing.assert_array_equal(fitted.vectors(["", "!!"])[0], fitted.vectors([""])[0])


def test_a_review_no_worker_trained_gets_an_inferred_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """gensim's corpus_file workers can miss reviews near their seams (gensim #2757); simulated on line 0."""
    real_train = gensim.models.doc2vec.Doc2Vec.train

    def missing_line_0(self, *args, **kwargs):
        start = self.dv.vectors[0].copy()
        real_train(self, *args, **kwargs)
        self.dv.vectors[0] = start

    monkeypatch.setattr(gensim.models.doc2vec.Doc2Vec, "train", missing_line_0)
    train = tiny_reviews(100, 0)
    model, context = fit({"epochs": 5}, train)
    assert context.extra_metrics["untrained_reviews_inferred"] == 1
    inferred = model.vectors(train.texts)  # line 0 holds some training review: now its inferred vector
    assert any(np.array_equal(model.doc2vec_.dv.vectors[0], vector) for vector in inferred)


def test_min_count_above_every_count_is_one_line() -> None:
    with pytest.raises(UserError, match=r"^model\.params\.min_count: ") as caught:
        fit({"min_count": 10_000}, tiny_reviews(20, 0))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["output", "coef", "intercept"])
def test_non_finite_weights_are_refused(saved: Path, name: str) -> None:
    array = np.load(saved / f"{name}.npy")
    array.flat[0] = np.nan
    np.save(saved / f"{name}.npy", array)
    with pytest.raises(UserError, match="NaN or infinite"):
        SentimentModel.load(saved)


def test_huge_output_weights_are_refused(saved: Path) -> None:
    array = np.load(saved / "output.npy")
    array.flat[0] = 1e20
    np.save(saved / "output.npy", array)
    with pytest.raises(UserError, match="implausible size"):
        SentimentModel.load(saved)
