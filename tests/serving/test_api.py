"""The REST API through FastAPI's TestClient: answers, the model card, and every kind of bad input."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from imdb_sentiment.serving.api import ServeLimits, create_app, served_model_from_run

WIDE = ServeLimits(max_texts=4, max_chars=200_000, max_explain_chars=200_000)


@pytest.fixture(scope="module")
def served(trained_run):
    return served_model_from_run(trained_run("nbsvm"))


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served, WIDE)) as test_client:
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
    # Every task's fields beside the binary ones: each class's probability.
    assert first["probabilities"] == pytest.approx(
        {"negative": 1 - first["prob_positive"], "positive": first["prob_positive"]}
    )


def test_explain_returns_word_offsets_into_the_text_sent(client) -> None:
    text = "A <b>great</b> film,<br /><br />but the ending was awful &amp; boring!"
    body = client.post("/predict", json={"texts": [text], "explain": True}).json()
    explanation = body["predictions"][0]["explanation"]
    assert explanation["method"] == "linear" and explanation["signed"]
    words = {w["word"]: w for w in explanation["words"]}
    for word in explanation["words"]:
        assert text[word["start"] : word["end"]] == word["word"]
    assert words["great"]["score"] > 0 and "film," in words and "but" in words
    assert words["awful"]["score"] < 0 and explanation["target"] == "positive"  # binary: towards positive
    body = client.post("/predict", json={"texts": [text], "explain": True, "target": "negative"}).json()
    negative = body["predictions"][0]["explanation"]
    assert negative["target"] == "negative"
    assert [w["score"] for w in negative["words"]] == pytest.approx([-w["score"] for w in explanation["words"]])


def test_health_and_model_card(client, trained_run) -> None:
    assert client.get("/health").json()["status"] == "ok"
    card = client.get("/model").json()
    assert card["name"] == "nbsvm" and card["run"] == trained_run("nbsvm").name
    assert card["package_version"] and "accuracy" in card["metrics"]
    data = card["training_data"]
    assert len(data["train_used_sha256"]) == len(data["source_train_sha256"]) == 64
    assert data["train_used_sha256"] != data["source_train_sha256"]  # a validation split was held out
    assert data["train_reviews_used"] == data["sizes"]["train"]
    assert card["config"]["model"]["name"] == "nbsvm" and card["explanation_method"] == "linear"
    assert card["backend"] == "scikit-learn" and card["limits"]["max_explain_chars"] == 200_000
    assert card["test_set"] == {"reviews": data["sizes"]["test"], "full_test_set": True,
                                "description": f"the whole test split ({data['sizes']['test']} reviews)"}  # fmt: skip


def test_the_card_says_a_test_limit_is_a_sample(trained_run, tmp_path) -> None:
    import shutil

    from imdb_sentiment.config import read_yaml
    from imdb_sentiment.models.configure import configure
    from imdb_sentiment.serving.card import model_card

    run = trained_run("nbsvm")
    config = configure(read_yaml(run / "config.yaml") | {"data": read_yaml(run / "config.yaml")["data"]
                       | {"test_limit": 10}}, for_training=False)  # fmt: skip
    shutil.copytree(run, tmp_path / "run")
    card = model_card(tmp_path / "run", config, "pytorch")
    assert not card["test_set"]["full_test_set"] and card["test_set"]["description"].startswith("a sample of")
    assert card["backend"] == "pytorch"


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
        ('{"texts": ["caf\xe9"]}'.encode("latin-1"), 400, "not UTF-8 (byte 0xe9 at 15)"),
        ('{"texts": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "nested too deeply"),
        ('{"texts": ["a"], "explain": ' + "9" * 5_000 + "}", 400, "too many digits"),
    ],
    ids=["unclosed", "not-json", "string", "number-in-list", "explain-string", "empty-list", "blank-text",
         "typo", "too-many", "html-only", "array", "latin-1", "deep-nesting", "5000-digits"],
)  # fmt: skip
def test_bad_input_is_a_json_error_saying_what_is_wrong(client, body, status, fragment) -> None:
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"] and fragment in response.json()["error"]


def test_every_status_has_the_one_error_shape(client) -> None:
    for response, status in ((client.get("/nowhere"), 404), (client.get("/predict"), 405),
                             (client.put("/model"), 405), (client.get("/docs"), 404), (client.get("/redoc"), 404)):  # fmt: skip
        assert response.status_code == status and list(response.json()) == ["error"], response.text
        assert "Traceback" not in response.text
    assert (
        "use POST" in client.get("/predict").json()["error"] and client.get("/predict").headers["allow"] == "POST"
    )
    assert client.get("/openapi.json").status_code == 200  # the schema stays; only the CDN pages are off


def test_docs_pages_only_when_asked(served) -> None:
    with TestClient(create_app(served, docs=True)) as docs_client:
        assert docs_client.get("/docs").status_code == 200 and docs_client.get("/redoc").status_code == 200


def test_only_allowed_hosts_are_answered(served) -> None:
    from imdb_sentiment.serving.guards import LOOPBACK_HOSTS

    app = create_app(served, allowed_hosts=LOOPBACK_HOSTS)
    with TestClient(app, base_url="http://localhost:8000") as local:
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
            assert local.get("/health", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "localhost.evil.example:8000", "[::1", ""):
            refused = local.get("/health", headers={"Host": host})
            assert refused.status_code == 400 and "--allowed-hosts" in refused.json()["error"], host
    with TestClient(
        create_app(served, allowed_hosts=["*.example.org"]), base_url="http://api.example.org"
    ) as named:
        assert named.get("/health").status_code == 200
        assert named.get("/health", headers={"Host": "example.org.evil"}).status_code == 400


def test_texts_with_no_known_word_are_flagged(client) -> None:
    body = client.post("/predict", json={"texts": ["🎬🍿😍", "great film"]}).json()
    blind, known = body["predictions"]
    assert blind["known_token_share"] == 0.0 and known["known_token_share"] > 0.5
    assert body["warnings"] == [
        "1 text(s) contain no word the model knows; their predictions are the model's prior."
    ]
    assert client.post("/predict", json={"texts": ["great film"]}).json()["warnings"] == []


def test_too_long_text_is_refused(client) -> None:
    response = client.post("/predict", json={"texts": ["great " * 40_000]})
    assert response.status_code == 422
    assert "at most 200,000 per text" in response.json()["error"]
    huge = client.post("/predict", content=b'{"texts": ["' + b"a" * 10_000_000 + b'"]}')
    assert huge.status_code == 413 and "at most 3,004,160" in huge.json()["error"]


def test_work_per_request_is_bounded(served) -> None:
    with TestClient(create_app(served)) as default_client:  # the defaults serve uses
        total = default_client.post("/predict", json={"texts": ["good film " * 9_000] * 3})
        assert total.status_code == 413 and "at most 250,000 per request" in total.json()["error"]
        explain = default_client.post("/predict", json={"texts": ["good film " * 2_100], "explain": True})
        assert explain.status_code == 422 and "at most 20,000 per request are explained" in explain.json()["error"]
        one_review = default_client.post("/predict", json={"texts": ["good film " * 1_400], "explain": True})
        assert one_review.status_code == 200 and one_review.json()["predictions"][0]["explanation"]["words"]


def test_a_chunked_body_is_refused_while_it_arrives(served) -> None:
    """No Content-Length: the body is counted as it comes, and reading stops once it is over the limit."""
    import asyncio

    import httpx

    sent = 0

    async def endless():
        nonlocal sent
        yield b'{"texts": ["'
        while sent < 400:  # 400 MB if nothing stops it
            sent += 1
            yield b"a" * 1_000_000

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(served))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.post("/predict", content=endless())

    response = asyncio.run(post())
    assert response.status_code == 413 and response.json()["error"].startswith("Request body of more than")
    from imdb_sentiment.serving.guards import LINGER_BYTES

    # The limit is 3,004,160 bytes (four 1 MB chunks); then what follows for a moment is read and
    # dropped, never kept, so that closing does not reset the connection under the answer.
    assert sent <= 4 + LINGER_BYTES // 1_000_000 + 1 < 400


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


def test_a_one_text_request_is_answered_while_a_long_explanation_runs() -> None:
    """An explanation in 20 slow units: a one-text request sent while it runs is answered after one
    unit, before the explanation ends (the old code ran a text's whole explanation as one job)."""
    import threading
    import time
    from types import SimpleNamespace

    import numpy as np

    from imdb_sentiment.config import CleaningConfig
    from imdb_sentiment.data.labels import SENTIMENT
    from imdb_sentiment.serving.api import ServedModel
    from imdb_sentiment.serving.explain import Explainer

    class SlowExplainer(Explainer):
        method = "linear"

        def token_score_units(self, cleaned, target):
            for _ in range(20):
                time.sleep(0.025)
                yield
            return [(0, len(cleaned))], np.ones(1)

        def token_scores(self, cleaned, target):  # all units at once
            units = self.token_score_units(cleaned, target)
            while True:
                try:
                    next(units)
                except StopIteration as done:
                    return done.value

    served = ServedModel(
        name="slow",
        predict_proba=lambda texts: np.tile([0.3, 0.7], (len(texts), 1)),
        card={},
        explainer=SlowExplainer(SimpleNamespace(classes=SENTIMENT), CleaningConfig()),
    )
    finished: dict[str, float] = {}
    with TestClient(create_app(served)) as test_client:

        def explain() -> None:
            response = test_client.post("/predict", json={"texts": ["a long review"], "explain": True})
            assert response.json()["predictions"][0]["explanation"]["words"][0]["word"] == "a"
            finished["explain"] = time.perf_counter()

        started = time.perf_counter()
        explaining = threading.Thread(target=explain)
        explaining.start()
        time.sleep(0.1)
        assert test_client.post("/predict", json={"texts": ["short"]}).status_code == 200
        finished["small"] = time.perf_counter()
        explaining.join()
    assert finished["explain"] - started >= 0.5 and finished["small"] < finished["explain"]
    assert finished["small"] - started < 0.3
