"""SetFit through the real CLI on a tiny CSV (offline: the bundled MiniLM), its pickle-free save, its
occlusion explanations and its one-line refusals."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers import (
    THREE_CLASSES,
    NullCapture,
    one_line_user_error,
    run_cli,
    tiny_reviews,
    tiny_three_class_reviews,
)

from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.serving.api import ServeLimits, create_app, served_model_from_run

# One pair per review and side, 32 tokens, no step cap: 14 training reviews -> 28 pairs -> 2 steps.
TINY = ["--set", "model.params.num_iterations=1", "--set", "model.params.max_length=32",
        "--set", "model.params.max_steps=null", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def setfit_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("setfit")
    reviews = tiny_reviews(40, 0)
    pd.DataFrame({"text": reviews.texts, "label": reviews.labels}).to_csv(root / "reviews.csv", index=False)
    code, _, err = run_cli(
        ["train", "setfit", "--data", str(root / "reviews.csv"), "--limit", "16", "--test-limit", "8",
         "--output-dir", str(root / "runs"), *TINY],
        NullCapture(),
    )  # fmt: skip
    assert code == 0, err
    (run_dir,) = list((root / "runs").iterdir())
    return root, run_dir


def test_train_saves_the_body_as_safetensors_and_the_head_as_arrays(setfit_run) -> None:
    _, run_dir = setfit_run
    model_dir = run_dir / "model"
    for name in ("body/model.safetensors", "body/modules.json", "head.json", "coef.npy", "intercept.npy",
                 "classes.npy", "manifest.json"):  # fmt: skip
        assert (model_dir / name).is_file(), name
    saved = {path.suffix for path in model_dir.rglob("*") if path.is_file()}
    assert not saved & {".pkl", ".joblib", ".bin", ".pt"}, saved
    assert json.loads((model_dir / "model.json").read_text())["params"]["num_iterations"] == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["examples"] == 8 and "valid_accuracy" in metrics["validation"]
    assert metrics["details"]["body_steps"] == 2


def test_predict_and_serve_load_the_run(setfit_run, capsys) -> None:
    _, run_dir = setfit_run
    code, out, err = run_cli(["predict", str(run_dir), "a great and wonderful film", "awful boring mess"], capsys)
    assert code == 0, err
    assert "positive" in out or "negative" in out
    served = served_model_from_run(run_dir)
    limits = ServeLimits(max_texts=4, max_chars=10_000, max_explain_chars=10_000)
    with TestClient(create_app(served, limits)) as client:
        text = "a great film but the ending was awful"
        body = client.post("/predict", json={"texts": [text], "explain": True}).json()
        explanation = body["predictions"][0]["explanation"]
        assert explanation["method"] == "occlusion" and explanation["signed"]
        assert [w["word"] for w in explanation["words"]] == text.split()
        assert client.get("/model").json()["explanation_method"] == "occlusion"


def test_occlusion_network_is_the_head_on_the_body(setfit_run) -> None:
    """The network that occlusion masks gives the same probabilities as predict_proba."""
    import torch

    _, run_dir = setfit_run
    model = SentimentModel.load(run_dir / "model")
    texts = ["a great film", "awful boring plot and a bad actor"]
    for text, probabilities in zip(texts, model.predict_proba(texts), strict=True):
        ids = torch.tensor([model.encoder.encode([text])[0]])
        with torch.no_grad():
            logits = model.network({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).logits
        np.testing.assert_allclose(torch.softmax(logits.double(), -1)[0].numpy(), probabilities, atol=1e-5)


def test_a_pickled_head_array_is_refused_not_unpickled(setfit_run, tmp_path) -> None:
    _, run_dir = setfit_run
    copy = tmp_path / "model"
    copy.mkdir()
    for path in (run_dir / "model").rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(run_dir / "model")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (copy / "coef.npy").write_bytes(pickle.dumps(np.zeros((1, 384))))
    one_line_user_error(lambda: SentimentModel.load(copy), "coef.npy", "not a plain numeric array")


def test_onnx_export_is_refused_in_one_line(setfit_run, capsys) -> None:
    _, run_dir = setfit_run
    code, _, err = run_cli(["export", str(run_dir), "--onnx"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (run_dir / "onnx").exists()


@pytest.mark.parametrize(
    ("setting", "field"),
    [("model.params.num_iterations=0", "model.params.num_iterations"),
     ("model.params.sampling_strategy=all", "model.params.sampling_strategy"),
     ("model.params.checkpoint=/no/such/body", "model.params.checkpoint")],
    ids=["iterations", "sampling", "checkpoint"],
)  # fmt: skip
def test_bad_settings_name_the_field_before_a_run_folder(setfit_run, capsys, setting, field) -> None:
    root, _ = setfit_run
    output = root / f"refused-{field}"
    code, _, err = run_cli(
        ["train", "setfit", "--data", str(root / "reviews.csv"), "--output-dir", str(output), "--set", setting],
        capsys,
    )
    assert code == 2 and field in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists() or not any(output.iterdir())


@pytest.fixture(scope="module")
def three_class_setfit():
    """The bundled body with a multinomial head fitted on its embeddings of three-class reviews (no
    contrastive steps: the head's shape and its uses are what is tested here)."""
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel
    from sklearn.linear_model import LogisticRegression

    from imdb_sentiment.models.hf.hub import minilm_path
    from imdb_sentiment.models.setfit_model import SetFitClassifier

    reviews = tiny_three_class_reviews(30, 0)
    body = SentenceTransformer(str(minilm_path()), device="cpu")
    head = LogisticRegression(max_iter=1000).fit(body.encode(reviews.texts), reviews.labels)
    model = SetFitClassifier({"max_length": 32})
    model.classes = THREE_CLASSES
    model._use(SetFitModel(model_body=body, model_head=head))
    return model, reviews


def test_a_three_class_head_has_a_row_per_class_in_predictions_network_and_files(three_class_setfit, tmp_path):
    import torch

    model, reviews = three_class_setfit
    head = model.model_.model_head
    assert head.coef_.shape == (3, 384)
    probabilities = model.predict_proba(reviews.texts)
    np.testing.assert_allclose(probabilities, head.predict_proba(model.model_.model_body.encode(reviews.texts)))
    ids = torch.tensor([model.encoder.encode([reviews.texts[0]])[0]])  # the network occlusion masks: same head
    with torch.no_grad():
        logits = model.network({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).logits
    assert logits.shape == (1, 3)
    np.testing.assert_allclose(torch.softmax(logits.double(), -1)[0].numpy(), probabilities[0], atol=1e-5)

    model.save(tmp_path / "model")
    assert np.load(tmp_path / "model" / "coef.npy", allow_pickle=False).shape == (3, 384)
    assert np.load(tmp_path / "model" / "intercept.npy", allow_pickle=False).shape == (3,)
    loaded = SentimentModel.load(tmp_path / "model")
    assert loaded.classes == THREE_CLASSES
    np.testing.assert_allclose(loaded.predict_proba(reviews.texts), probabilities, rtol=1e-5, atol=1e-6)
    np.save(tmp_path / "model" / "coef.npy", np.zeros((1, 384)))  # a binary head under three classes
    one_line_user_error(lambda: SentimentModel.load(tmp_path / "model"), "coef.npy holds", "shape (3, 384)")
