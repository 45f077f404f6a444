"""The REST API through FastAPI's TestClient: answers, the model card, and every kind of bad input."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from imdb_sentiment.serving.api import ServeLimits, create_app, served_model_from_run


@pytest.fixture(scope="module")
def client(trained_run):
    served = served_model_from_run(trained_run("nbsvm"))
    with TestClient(create_app(served, ServeLimits(max_texts=4, max_chars=200_000))) as test_client:
        yield test_client


def test_predict_returns_label_and_probability(client) -> None:
    response = client.post("/predict", json={"texts": ["great wonderful film", "awful boring film"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "nbsvm"
    first, second = body["predictions"]
    assert (first["label"], second["label"]) == ("positive", "negative")
    assert first["prob_positive"] > 0.5 > second["prob_positive"]
    assert first["explanation"] is None


def test_explain_returns_word_offsets_into_the_text_sent(client) -> None:
    text = "A <b>great</b> film,<br /><br />but the ending was awful &amp; boring!"
    body = client.post("/predict", json={"texts": [text], "explain": True}).json()
    explanation = body["predictions"][0]["explanation"]
    assert explanation["method"] == "linear" and explanation["signed"]
    words = {w["word"]: w for w in explanation["words"]}
    for word in explanation["words"]:
        assert text[word["start"] : word["end"]] == word["word"]
    assert words["great"]["score"] > 0 and "film," in words and "but" in words
    assert words["awful"]["score"] < 0


def test_health_and_model_card(client, trained_run) -> None:
    assert client.get("/health").json()["status"] == "ok"
    card = client.get("/model").json()
    assert card["name"] == "nbsvm" and card["run"] == trained_run("nbsvm").name
    assert card["package_version"] and "accuracy" in card["metrics"]
    assert len(card["training_data"]["train_content_sha256"]) == 64
    assert card["config"]["model"]["name"] == "nbsvm" and card["explanation_method"] == "linear"


def test_openapi_schema_has_examples(client) -> None:
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["PredictRequest"]
    assert request["examples"][0]["texts"]
    assert "422" in schema["paths"]["/predict"]["post"]["responses"]


def test_page_is_self_contained(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<textarea" in page.text and "http" not in page.text.replace("HTTP ", "")  # no CDN, no external URL


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ('{"texts": ["good"', 400, "Malformed JSON"),
        ("not json at all", 400, "Malformed JSON"),
        ('{"texts": "one string"}', 422, "texts: Input should be a valid list"),
        ('{"texts": ["fine", 3]}', 422, "texts[1]: Input should be a valid string"),
        ('{"texts": ["fine"], "explain": "yes"}', 422, "explain: Input should be a valid boolean"),
        ('{"texts": []}', 422, "texts: List should have at least 1 item"),
        ('{"texts": ["fine", "  "]}', 422, "text 1 is empty or whitespace only"),
        ('{"text": ["typo in the key"]}', 422, "texts: Field required"),
        ('{"texts": ["a", "b", "c", "d", "e"]}', 422, "at most 4 per request"),
        ('{"texts": ["<br /><br />"]}', 422, "empty or whitespace-only"),
        ("[1, 2]", 422, "body: Input should be a valid dictionary"),
    ],
)
def test_bad_input_is_a_json_error_saying_what_is_wrong(client, body, status, fragment) -> None:
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_too_long_text_is_refused(client) -> None:
    response = client.post("/predict", json={"texts": ["great " * 40_000]})
    assert response.status_code == 422
    assert "at most 200,000 per text" in response.json()["error"]
    huge = client.post("/predict", content=b'{"texts": ["' + b"a" * 10_000_000 + b'"]}')
    assert huge.status_code == 413 and "at most 9,604,160" in huge.json()["error"]


@pytest.mark.parametrize(
    "text",
    [
        "Ein wunderbarer Film, großartig gespielt.",
        "映画はとても良かった",
        "🎬🍿 loved it 😍👍",
        "<script>alert(1)</script> great",
        "wonderful " * 10_000,
        "x" * 100_000,
    ],
    ids=["german", "japanese", "emoji", "html", "100k-words", "100k-chars"],
)
def test_unusual_texts_are_answered(client, text) -> None:
    response = client.post("/predict", json={"texts": [text], "explain": True})
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    assert 0.0 <= prediction["prob_positive"] <= 1.0
    for word in prediction["explanation"]["words"]:
        assert text[word["start"] : word["end"]] == word["word"]


def test_a_failing_model_is_a_json_500_without_traceback() -> None:
    from imdb_sentiment.serving.api import ServedModel

    def broken(texts: list[str]):
        raise RuntimeError("weights on fire")

    served = ServedModel(name="broken", predict_proba=broken, card={"run": "x"})
    with TestClient(create_app(served), raise_server_exceptions=False) as test_client:
        response = test_client.post("/predict", json={"texts": ["fine"]})
        assert response.status_code == 500
        assert response.json() == {"error": "Internal error (RuntimeError); the server log has details."}
        assert test_client.post("/predict", json={"texts": ["fine"], "explain": True}).status_code == 422
