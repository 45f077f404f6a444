"""Prediction and serving of a model of three classes (negative / neutral / positive, not sentiment's
two): predict's columns and table, evaluate's summary, the API's labels, probabilities and explanations
of any class, the card and the page; and an old binary run folder (no classes recorded) still serving."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers import THREE_CLASSES, NullCapture, run_cli

from imdb_sentiment.serving.api import ServeLimits, create_app, served_model_from_run
from imdb_sentiment.serving.explain import LinearExplainer
from imdb_sentiment.serving.predictor import Predictor

NAMES = list(THREE_CLASSES.names)
# One text per class, made of its training cue words (tests/helpers.py).
CUE_TEXTS = {
    "negative": "awful boring film",
    "neutral": "average okay mixed film",
    "positive": "great wonderful film",
}
LIMITS = ServeLimits(max_texts=4, max_explain_chars=10_000)


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def client(three_class_run):
    with TestClient(create_app(served_model_from_run(three_class_run), LIMITS)) as test_client:
        yield test_client


def test_predict_writes_one_probability_column_per_class(three_class_run, tmp_path) -> None:
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"id": list(CUE_TEXTS), "text": list(CUE_TEXTS.values())}).to_csv(texts, index=False)
    output = tmp_path / "predictions.csv"
    code, _, err = run_cli(["predict", str(three_class_run), "--file", str(texts), "--output", str(output)],
                           NullCapture())  # fmt: skip
    assert code == 0, err
    frame = pd.read_csv(output)
    assert list(frame.columns) == ["id", "prob_negative", "prob_neutral", "prob_positive", "prediction",
                                   "known_token_share"]  # fmt: skip
    np.testing.assert_allclose(frame[[f"prob_{name}" for name in NAMES]].sum(axis=1), 1.0, atol=1e-5)
    assert frame["prediction"].tolist() == frame["id"].tolist() == NAMES  # class names, each cue text right


def test_predict_table_shows_the_label_and_its_probability(three_class_run, capsys) -> None:
    code, out, err = run_cli(["predict", str(three_class_run), CUE_TEXTS["neutral"]], capsys)
    assert code == 0, err
    assert "P(label)" in out and "P(positive)" not in out
    (row,) = [[cell.strip() for cell in line.strip("│").split("│")] for line in out.splitlines()
              if line.startswith("│")]  # fmt: skip
    assert row[1] == "neutral" and 1 / 3 < float(row[2]) <= 1.0


def test_a_kaggle_submission_is_refused_for_other_classes(three_class_run, tmp_path, capsys) -> None:
    submission = tmp_path / "submission.csv"
    code, _, err = run_cli(
        ["predict", str(three_class_run), "a film", "--kaggle-submission", str(submission)], capsys
    )
    assert code == 2 and one_line(err) and "0/1 sentiment" in err and "negative, neutral, positive" in err
    assert not submission.exists()


def test_evaluate_prints_macro_f1_and_scores_a_table_of_some_classes(three_class_run, tmp_path, capsys) -> None:
    code, out, err = run_cli(["evaluate", str(three_class_run)], capsys)
    assert code == 0, err
    assert "macro_f1" in out and "accuracy" in out
    # A table labelled with two of the model's classes is scored in the model's classes.
    table = tmp_path / "two.csv"
    pd.DataFrame({"text": [CUE_TEXTS["negative"], CUE_TEXTS["positive"]] * 3,
                  "label": ["negative", "positive"] * 3}).to_csv(table, index=False)  # fmt: skip
    code, out, err = run_cli(["evaluate", str(three_class_run), "--data", str(table)], capsys)
    assert code == 0, err
    saved = json.loads(sorted((three_class_run / "evaluations").glob("two.csv-*.json"))[-1].read_text())
    assert saved["examples"] == 6 and saved["accuracy"] == 1.0 and len(saved["confusion_matrix"]) == 3
    assert saved["per_class"]["neutral"]["support"] == 0
    # A label the model does not have: one line, exit 2.
    pd.DataFrame({"text": ["a film", "a movie"], "label": ["negative", "superb"]}).to_csv(table, index=False)
    code, _, err = run_cli(["evaluate", str(three_class_run), "--data", str(table)], capsys)
    assert code == 2 and one_line(err) and "'superb'" in err


def test_the_summary_of_ordered_classes_shows_mae_and_within_one(capsys) -> None:
    from imdb_sentiment.cli.app import print_metrics

    metrics = {"accuracy": 0.44, "macro_f1": 0.32, "mae": 1.32, "mae_units": "label value", "within_one": 0.61,
               "per_class": {}}  # fmt: skip
    print_metrics(metrics, "ratings")
    out = capsys.readouterr().out
    assert "macro_f1" in out and "mae (label value)" in out and "1.3200" in out and "within_one" in out
    print_metrics({"accuracy": 0.9, "f1": 0.9, "macro_f1": 0.9}, "binary")  # two classes: as before, no macro_f1
    assert "macro_f1" not in capsys.readouterr().out


def test_the_api_returns_every_class_probability_and_the_label(client) -> None:
    response = client.post("/predict", json={"texts": list(CUE_TEXTS.values())})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [prediction["label"] for prediction in predictions] == NAMES
    for prediction in predictions:
        assert list(prediction["probabilities"]) == NAMES and prediction["prob_positive"] is None
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert max(prediction["probabilities"], key=prediction["probabilities"].get) == prediction["label"]


def test_the_api_explains_the_predicted_class_or_the_one_asked_for(client, three_class_run) -> None:
    text = "great wonderful film but awful"
    body = client.post("/predict", json={"texts": [text], "explain": True}).json()
    prediction = body["predictions"][0]
    assert prediction["explanation"]["target"] == prediction["label"]
    scores = {}
    for target in NAMES:
        response = client.post("/predict", json={"texts": [text], "explain": True, "target": target})
        assert response.status_code == 200, response.text
        explanation = response.json()["predictions"][0]["explanation"]
        assert explanation["method"] == "linear" and explanation["target"] == target
        scores[target] = {word["word"]: word["score"] for word in explanation["words"]}
    # Each class's own cue words push towards it; another class's push away.
    assert scores["positive"]["great"] > 0 > scores["positive"]["awful"]
    assert scores["negative"]["awful"] > 0 > scores["negative"]["great"]
    # Exact: each class's word scores add up to its decision function without the intercept.
    predictor = Predictor.from_run(three_class_run)
    explainer = LinearExplainer(predictor.model, predictor.config.data.clean)
    for index, target in enumerate(NAMES):
        expected = explainer.decision_without_intercept(text, index)
        assert sum(scores[target].values()) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"texts": ["a film"], "explain": True, "target": "superb"}, "'superb' is not a class of this model"),
        ({"texts": ["a film"], "target": "neutral"}, "send it with explain: true"),
        ({"texts": ["a film"], "explain": True, "target": 3}, "target: Input should be a valid string"),
    ],
    ids=["unknown-class", "without-explain", "not-a-string"],
)
def test_a_bad_target_is_one_json_error(client, body, fragment) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422 and list(response.json()) == ["error"], response.text
    assert fragment in response.json()["error"]


def test_the_card_lists_the_classes_and_macro_f1(client) -> None:
    card = client.get("/model").json()
    assert card["classes"] == {"names": NAMES, "ordered": False}
    assert "macro_f1" in card["headline_metrics"] and "f1" not in card["headline_metrics"]
    assert "renderBars" in client.get("/").text  # the page draws a bar per class


def test_an_old_binary_run_folder_without_classes_still_serves(trained_run, tmp_path) -> None:
    """A run saved before classes existed: model.json and data.json without "classes", and (older still)
    no manifest; it loads as the sentiment task and answers as it always did."""
    old = tmp_path / "old-run"
    shutil.copytree(trained_run("nbsvm"), old)
    for name in ("model/model.json", "data.json"):
        meta = json.loads((old / name).read_text())
        meta.pop("classes", None)
        (old / name).write_text(json.dumps(meta))
    (old / "model" / "manifest.json").unlink()
    served = served_model_from_run(old)
    assert not served.files_checked and served.classes.is_sentiment
    with TestClient(create_app(served, LIMITS)) as old_client:
        body = old_client.post("/predict", json={"texts": ["great wonderful film"], "explain": True}).json()
        prediction = body["predictions"][0]
    assert prediction["label"] == "positive" and prediction["prob_positive"] > 0.5
    assert prediction["probabilities"]["positive"] == prediction["prob_positive"]
    assert prediction["explanation"]["target"] == "positive"
    assert served.card["classes"] == {"names": ["negative", "positive"], "ordered": False}
