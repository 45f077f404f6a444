"""LLM classifiers on any number of classes: one label word per class (the task's defaults, or given
in class order), the template that lists them, shots balanced over the classes, K-class calibration of
llm-score, and llm-prompt parsing and scoring any label word."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from helpers import (
    THREE_CLASSES,
    fit_context,
    one_line_user_error,
    run_cli,
    tiny_causal_lm_folder,
    tiny_reviews,
    tiny_three_class_reviews,
    write_tiny_parquet_imdb,
)

from imdb_sentiment.data.labels import RATINGS, SENTIMENT
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.llm.calibration import fit_intercepts
from imdb_sentiment.models.llm.encoding import LMPromptParams
from imdb_sentiment.models.llm.endpoint import parse_answer
from imdb_sentiment.models.llm.prompting import DEFAULT_TEMPLATE, PromptParams, balanced_indices
from imdb_sentiment.models.registry import get_model_class


# ---------------------------------------------------------------------------------- prompt defaults
def test_the_default_prompt_lists_every_label_word_and_sentiment_keeps_its_own() -> None:
    three = LMPromptParams().for_task(THREE_CLASSES)
    assert three.label_words == ["negative", "neutral", "positive"]
    assert three.template.endswith("Answer with one word: negative, neutral or positive.")
    assert three.answer_prefix == "The answer is"
    sentiment = LMPromptParams().for_task(SENTIMENT)
    assert (sentiment.template, sentiment.label_words) == (DEFAULT_TEMPLATE, ["negative", "positive"])
    assert sentiment.answer_prefix == "The sentiment is"
    ratings = PromptParams(label_words=[f"{stars} stars" for stars in RATINGS.names]).for_task(RATINGS)
    assert "1 stars, 2 stars, 3 stars, 4 stars, 7 stars, 8 stars, 9 stars or 10 stars." in ratings.template
    given = PromptParams(template="Mood of {text}?", label_words=["sad", "meh", "glad"]).for_task(THREE_CLASSES)
    assert (given.template, given.label_words) == ("Mood of {text}?", ["sad", "meh", "glad"])


def test_shots_are_balanced_over_three_classes_and_cycle_through_them() -> None:
    labels = np.array([0, 1, 2] * 10)
    picked = balanced_indices(labels, 7, seed=5, num_classes=3)
    assert np.bincount(labels[picked], minlength=3).tolist() == [2, 2, 3]  # the highest label gets the rest
    chosen = labels[picked].tolist()
    assert all((b - a) % 3 == 1 for a, b in itertools.pairwise(chosen[:6]))  # cycles through the labels
    assert picked.tolist() == balanced_indices(labels, 7, seed=5, num_classes=3).tolist()


# ------------------------------------------------------------------------------ label word refusals
@pytest.mark.parametrize("model", ["llm-score", "llm-prompt"])
def test_label_words_for_another_number_of_classes_are_one_line_before_a_run(model: str) -> None:
    where = (
        {"checkpoint": tiny_causal_lm_folder()} if model == "llm-score" else {"base_url": "http://127.0.0.1:9/v1"}
    )
    raw = {"data": {"format": "table", "path": "unused.csv", "labels": ["bad", "so-so", "good"]},
           "model": {"name": model, "params": {"label_words": ["negative", "positive"], **where}}}  # fmt: skip
    one_line_user_error(lambda: configure(raw), "model.params.label_words", "2 words for 3 classes")


def test_the_cli_refuses_three_label_words_for_imdb_sentiment_without_a_run_folder(tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "data", size=12)
    args = ["train", "llm-score", "--data", str(tmp_path / "data"), "--quiet",
            "--output-dir", str(tmp_path / "runs"),
            "--set", f"model.params.checkpoint={json.dumps(tiny_causal_lm_folder())}",
            "--set", 'model.params.label_words=["bad", "so-so", "good"]']  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert (
        code == 2
        and "model.params.label_words: 3 words for 2 classes" in err
        and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_tables_label_word_count_is_refused_once_read_and_before_a_run_folder(tmp_path, capsys) -> None:
    """A table's classes are known once it is read; the pipeline asks the model (check_classes) then,
    before it creates a run folder (before: refused at fit start, leaving a failed run folder)."""
    reviews = tiny_three_class_reviews(24, 0)
    table = tmp_path / "three.csv"
    table.write_text(
        "text,label\n"
        + "".join(
            f"{text},{reviews.classes.names[label]}\n"
            for text, label in zip(reviews.texts, reviews.labels, strict=True)
        )
    )
    args = ["train", "llm-score", "--data", str(table), "--quiet", "--output-dir", str(tmp_path / "runs"),
            "--set", f"model.params.checkpoint={json.dumps(tiny_causal_lm_folder())}",
            "--set", 'model.params.label_words=["no", "yes"]']  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "model.params.label_words: 2 words for 3 classes" in err, err
    assert not (tmp_path / "runs").exists()


def test_a_tables_label_word_count_is_checked_when_the_fit_starts() -> None:
    """A table's classes are known once it is read: the fit refuses before it loads the LM."""
    model = get_model_class("llm-score")({"checkpoint": tiny_causal_lm_folder(), "label_words": ["no", "yes"]})
    train = tiny_three_class_reviews(12, 0)
    one_line_user_error(
        lambda: model.fit(train, train, fit_context()), "model.params.label_words", "2 words for 3"
    )


# ----------------------------------------------------------------------------------- llm-score, K = 3
def test_intercepts_remove_a_label_prior_on_balanced_reviews() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 200)
    scores = np.eye(3)[labels] * 2.0 + rng.normal(0, 1, (600, 3)) + np.array([0.0, 0.0, 3.0])  # "positive" bias
    biases = np.asarray(fit_intercepts(scores, labels, 3))
    assert biases[0] == 0.0 and biases[2] - biases[1] == pytest.approx(3.0, abs=0.3)
    from scipy.special import softmax

    np.testing.assert_allclose(softmax(scores - biases, axis=1).mean(axis=0), [1 / 3] * 3, atol=1e-4)


def test_llm_score_on_three_classes_scores_three_words_and_keeps_per_class_biases(tmp_path) -> None:
    model = get_model_class("llm-score")({"checkpoint": tiny_causal_lm_folder(), "shots": 3, "max_length": 8,
                                          "calibration_size": 9})  # fmt: skip
    train = tiny_three_class_reviews(24, 0)
    model.fit(train, train, fit_context())
    assert len(model.encoder.label_ids) == len(set(model.encoder.label_ids)) == 3
    assert sorted(label for _, label in model.shots) == [0, 1, 2]
    assert {name: len(bias) for name, bias in model.biases.items()} == {"none": 3, "content-free": 3, "train": 3,
                                                                        "prior": 3}  # fmt: skip
    test = tiny_three_class_reviews(9, 2)
    probabilities = model.predict_proba(test.texts)
    scores = model.label_scores(test.texts) - np.asarray(model.biases["train"])
    np.testing.assert_array_equal(probabilities.argmax(1), scores.argmax(1))
    metrics = model.prediction_metrics(test.texts, test.labels, probabilities)
    assert metrics["accuracy_train"] == pytest.approx(float((scores.argmax(1) == test.labels).mean()))
    model.save(tmp_path / "saved")
    loaded = SentimentModel.load(tmp_path / "saved")
    assert loaded.classes == THREE_CLASSES and loaded.biases == model.biases


# --------------------------------------------------------------------------------- llm-prompt, K = 3
@pytest.mark.parametrize(
    ("answer", "label"),
    [("Neutral.", 1), ("**positive**", 2), (" negative\n", 0), ("neutral, maybe positive", None),
     ("I think neutral", None), ("mixed", None), ("", None)],
)  # fmt: skip
def test_any_of_three_label_words_is_parsed_and_two_are_ambiguous(answer, label) -> None:
    assert parse_answer(answer, ["negative", "neutral", "positive"]) == label


def test_label_words_of_several_words_or_digits_are_parsed_as_such() -> None:
    words = ["1 star", "10 stars", "very good", "good"]
    assert parse_answer("10 stars!", words) == 1 and parse_answer("1 star.", words) == 0
    assert parse_answer("Very good", words) == 2 and parse_answer("good", words) == 3
    assert parse_answer("good, not 1 star", words) is None and parse_answer("stars", words) is None


def test_llm_prompt_on_three_classes_asks_for_three_words_and_counts_invalid_answers(tmp_path) -> None:
    train, test = tiny_three_class_reviews(12, 0), tiny_three_class_reviews(9, 1)
    test.texts = [f"{text} OFFLABEL" if i % 4 == 0 else text for i, text in enumerate(test.texts)]
    with FakeOpenAI() as server:
        model = get_model_class("llm-prompt")({"base_url": server.base_url, "model": "fake",
                                               "answer_cache": str(tmp_path / "cache")})  # fmt: skip
        model.fit(train, train, fit_context())
        assert "Answer with one word: negative, neutral or positive." in model.messages("x")[-1]["content"]
        probabilities = model.predict_proba(test.texts)
        metrics = model.prediction_metrics(test.texts, test.labels, probabilities)
    invalid = np.array([i % 4 == 0 for i in range(9)])
    np.testing.assert_allclose(probabilities[invalid], 1 / 3)
    np.testing.assert_array_equal(probabilities[~invalid].argmax(1), test.labels[~invalid])  # cue words: right
    matrix = np.asarray(metrics["confusion_matrix"])
    assert metrics["confusion_matrix_columns"] == ["negative", "neutral", "positive", "invalid"]
    assert matrix.shape == (3, 4) and matrix[:, 3].sum() == metrics["invalid_answers"] == 3
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / 9) and metrics["coverage"] == pytest.approx(
        6 / 9
    )
    assert set(metrics["per_class"]) == {"negative", "neutral", "positive"} and "precision" not in metrics
    recall = [metrics["per_class"][name]["recall"] for name in THREE_CLASSES.names]
    np.testing.assert_allclose(recall, np.diag(matrix) / matrix.sum(axis=1))  # an invalid answer is a miss


def test_a_binary_task_with_other_label_words_keeps_the_sentiment_template() -> None:
    resolved = PromptParams(label_words=["bad", "good"]).for_task(SENTIMENT)
    assert resolved.template == DEFAULT_TEMPLATE and resolved.label_words == ["bad", "good"]
    assert tiny_reviews(4, 0).classes == SENTIMENT
