"""``export RUN --onnx [--quantize int8]`` and the onnxruntime backend (``predict`` / ``evaluate --onnx``).

Two tiny runs are trained once through the CLI: a word model (cnn, random embeddings) and a one-layer
random BERT (``hf`` from scratch, MiniLM's tokenizer). What is tested, honestly:

- fp32: the ONNX graph run by onnxruntime, through the backend's own batching, gives P(positive)
  within 1e-3 of the PyTorch model on reviews of varied lengths (batched with padding and alone);
- int8: on these tiny models the int8 graph's accuracy on the tiny test split is within one review
  of fp32 PyTorch and its probabilities stay close; this shows the quantised path is wired right,
  not that int8 keeps accuracy on real models (scripts/inference_speed.py measures that);
- the CLI promises: exit 2 with one line when a run has no export, an altered graph, a model that
  cannot be exported, and flags that do not go together.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_user_error, run_cli, tiny_reviews, write_tiny_parquet_imdb

from imdb_sentiment.pipelines.export import ONNX_DIR, ONNX_MANIFEST, export_onnx
from imdb_sentiment.serving.predictor import Predictor

CLI = Path(sys.executable).with_name("imdb-sentiment")
TRAIN_SETTINGS = {
    "cnn": ["model.params.embeddings=random", "model.params.embedding_dim=16", "model.params.max_length=32",
            "model.params.min_freq=1", "model.params.num_filters=8", "training.learning_rate=1e-2"],
    "hf": ["model.params.from_scratch=true", "model.params.hidden_size=32", "model.params.num_layers=1",
           "model.params.num_heads=2", "model.params.intermediate_size=64", "model.params.max_length=32",
           "model.params.pooling=mean", "training.learning_rate=5e-3"],
}  # fmt: skip
# Varied lengths (one word to far beyond max_length), cue words and none, emoji and HTML.
TEXTS = [
    *tiny_reviews(24, 7).texts,
    "great",
    "awful " * 80,
    "the plot was a story and the actor a scene " * 12 + "but wonderful",
    "🙂 <br /><br /> terrible & boring",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """model name -> a finished tiny run, both trained once per module, side by side."""
    root = tmp_path_factory.mktemp("onnx")
    write_tiny_parquet_imdb(root / "imdb", size=48)
    processes = {}
    for name, settings in TRAIN_SETTINGS.items():
        common = ["training.epochs=4", "training.batch_size=8", "training.threads=1"]
        overrides = [arg for setting in [*settings, *common] for arg in ("--set", setting)]
        args = ["train", name, "--data", str(root / "imdb"), "--output-dir", str(root / name), "--quiet"]
        processes[name] = subprocess.Popen([str(CLI), *args, *overrides], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    found = {}
    for name, process in processes.items():
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        (found[name],) = (root / name).iterdir()
    return found


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict[str, Path]:
    """model name -> a copy of its tiny run with an fp32 ONNX export (exported once per module)."""
    root = tmp_path_factory.mktemp("exported")
    found = {}
    for name, run in runs.items():
        found[name] = copy_run(run, root)
        export_onnx(found[name])
    return found


@pytest.mark.parametrize("name", ["cnn", "hf"])
def test_fp32_graph_gives_the_pytorch_probabilities(exported, name) -> None:
    run = exported[name]
    manifest = json.loads((run / ONNX_DIR / ONNX_MANIFEST).read_text())
    assert manifest["precision"] == "fp32" and manifest["quantization"] is None and manifest["model"] == name
    assert manifest["max_abs_diff_vs_pytorch"] < 1e-3
    pytorch, onnx = Predictor.from_run(run), Predictor.from_run(run, onnx=True)
    assert (pytorch.backend, onnx.backend) == ("native", "onnxruntime fp32")
    for batch_size in (1, 8):  # alone, and batched with padding in length-sorted batches
        expected = pytorch.predict_proba(TEXTS, batch_size=batch_size)
        found = onnx.predict_proba(TEXTS, batch_size=batch_size)
        assert found.shape == (len(TEXTS), 2) and np.allclose(found.sum(axis=1), 1.0)
        assert np.abs(found[:, 1] - expected[:, 1]).max() < 1e-3
    assert np.array_equal(onnx.model.known_token_share(TEXTS), pytorch.model.known_token_share(TEXTS))


def int8_agrees(run: Path, name: str) -> None:
    test = tiny_reviews(40, 11)
    pytorch = Predictor.from_run(run).predict_proba(test.texts)
    int8 = Predictor.from_run(run, onnx=True).predict_proba(test.texts)
    correct = [int((probabilities.argmax(axis=1) == test.labels).sum()) for probabilities in (pytorch, int8)]
    assert correct[0] >= 30, f"the tiny {name} run did not learn the cue words ({correct[0]}/40)"
    assert abs(correct[0] - correct[1]) <= 1
    assert np.abs(int8[:, 1] - pytorch[:, 1]).max() < 0.05


def test_int8_graph_keeps_the_accuracy_of_a_tiny_hf_model(runs, tmp_path) -> None:
    run = copy_run(runs["hf"], tmp_path)
    manifest = json.loads((export_onnx(run, quantize="int8") / ONNX_MANIFEST).read_text())
    assert manifest["precision"] == "int8" and manifest["quantization"]["per_channel"] is True
    int8_agrees(run, "hf")


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_optimize_fuses_attention_and_keeps_the_predictions(runs, tmp_path, quantize) -> None:
    """--optimize exports eager attention with the TorchScript exporter so that onnxruntime fuses
    every layer's attention; the fused graph still gives PyTorch's probabilities on padded batches."""
    run = copy_run(runs["hf"], tmp_path)
    manifest = json.loads((export_onnx(run, quantize=quantize, optimize=True) / ONNX_MANIFEST).read_text())
    assert manifest["fused_operators"]["Attention"] == 1  # the tiny BERT's one layer
    assert manifest["fused_operators"]["SkipLayerNormalization"] == 2
    if quantize:
        int8_agrees(run, "hf")
        return
    pytorch, onnx = Predictor.from_run(run), Predictor.from_run(run, onnx=True)
    for batch_size in (1, 8):
        found, expected = (p.predict_proba(TEXTS, batch_size=batch_size) for p in (onnx, pytorch))
        assert np.abs(found[:, 1] - expected[:, 1]).max() < 1e-3


def test_cli_int8_export_then_predict_and_evaluate_with_onnx(runs, tmp_path, capsys) -> None:
    run = copy_run(runs["cnn"], tmp_path)
    missing = subprocess.run([str(CLI), "predict", str(run), "--onnx", "great"], capture_output=True, text=True)
    assert missing.returncode == 2 and "has no ONNX export" in missing.stderr and "export" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) <= 3  # rich wraps

    code, out, err = run_cli(["export", str(run), "--onnx", "--quantize", "int8"], capsys)
    assert code == 0, err
    assert "ONNX int8 graph" in out and not (run / "onnx.tmp").exists()
    int8_agrees(run, "cnn")

    predictions = {}
    for flags in ([], ["--onnx"]):
        code, _, err = run_cli(
            ["predict", str(run), *TEXTS[:6], "--output", str(tmp_path / "p.csv"), *flags], capsys
        )
        assert code == 0, err
        predictions[bool(flags)] = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1, usecols=1)
    assert np.abs(predictions[True] - predictions[False]).max() < 0.05

    code, _, err = run_cli(["evaluate", str(run), "--onnx", "--limit", "10"], capsys)
    assert code == 0, err
    (saved,) = (run / "evaluations").iterdir()
    metrics = json.loads(saved.read_text())
    assert metrics["backend"] == "onnxruntime int8" and metrics["examples"] == 10


def test_an_altered_graph_is_refused(exported, tmp_path) -> None:
    run = copy_run(exported["cnn"], tmp_path)
    graph = run / ONNX_DIR / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    one_line_user_error(lambda: Predictor.from_run(run, onnx=True), "altered", "export again")


def test_an_export_of_another_run_or_without_a_manifest_is_refused(exported, tmp_path) -> None:
    run = copy_run(exported["cnn"], tmp_path)
    manifest_file = run / ONNX_DIR / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    assert set(manifest["files"]) == {"model.onnx", ONNX_MANIFEST} and manifest["model"] == "cnn"
    manifest_file.write_text(json.dumps({**manifest, "config_sha256": "0" * 64}))  # exported from another run
    one_line_user_error(lambda: Predictor.from_run(run, onnx=True), "onnx belongs to another run", "export again")
    manifest_file.unlink()  # exported by a version before manifests
    one_line_user_error(lambda: Predictor.from_run(run, onnx=True), "has no manifest.json", "export again")


def test_what_cannot_be_exported_says_so(tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "imdb", size=20)
    code, _, err = run_cli(["train", "nbsvm", "--data", str(tmp_path / "imdb"), "--output-dir",
                            str(tmp_path / "runs"), "--quiet", "--set", "model.params.min_df=1"], capsys)  # fmt: skip
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    code, _, err = run_cli(["export", str(run), "--onnx"], capsys)
    assert code == 2 and "not a PyTorch model" in err
    for flags, message in ((["--quantize", "int8"], "apply to --onnx exports only"), ([], "Pass one of --merge"),
                           (["--merge", "--onnx"], "Pass one of"), (["--onnx", "--output", "x"], "RUN/onnx/")):  # fmt: skip
        code, _, err = run_cli(["export", str(run), *flags], capsys)
        assert code == 2 and message in err, (flags, err)
    assert not (run / ONNX_DIR).exists()


def test_the_api_serves_the_onnx_graph(exported) -> None:
    from fastapi.testclient import TestClient

    from imdb_sentiment.serving.api import create_app, served_model_from_run

    run = exported["hf"]
    served = served_model_from_run(run, Predictor.from_run(run, onnx=True))
    assert served.explainer is None  # explanations need the PyTorch network
    with TestClient(create_app(served)) as client:
        response = client.post("/predict", json={"texts": TEXTS[:4]})
    assert response.status_code == 200, response.text
    expected = Predictor.from_run(run).predict_proba(TEXTS[:4])[:, 1]
    found = [prediction["prob_positive"] for prediction in response.json()["predictions"]]
    assert np.abs(np.asarray(found) - expected).max() < 1e-3
