"""``export RUN --onnx [--quantize int8]`` and the onnxruntime backend (``predict`` / ``evaluate --onnx``).

Three tiny runs are trained once through the CLI: word models (cnn; fasttext on three classes,
negative / neutral / positive, from a CSV) and a one-layer random BERT (``hf`` from scratch, MiniLM's
tokenizer). What is tested, honestly:

- fp32: the ONNX graph run by onnxruntime, through the backend's own batching, gives every class
  probability within 1e-3 of the PyTorch model on reviews of varied lengths (batched with padding and
  alone), for two classes and for three (the export's own check covers every class too);
- int8: on these tiny models the int8 graph's accuracy on the tiny test split is within one review
  of fp32 PyTorch and its probabilities stay close; this shows the quantised path is wired right,
  not that int8 keeps accuracy on real models (scripts/inference_speed.py measures that);
- the CLI promises: exit 2 with one line when a run has no export, an altered graph, a model that
  cannot be exported, and flags that do not go together.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    THREE_CLASSES,
    one_line_user_error,
    run_cli,
    tiny_reviews,
    tiny_three_class_reviews,
    write_tiny_parquet_imdb,
)

from imdb_sentiment.data.labels import SENTIMENT
from imdb_sentiment.io_utils import sha256_file
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.onnx_format import ONNX_DIR, ONNX_MANIFEST
from imdb_sentiment.pipelines.experiment import run_experiment
from imdb_sentiment.pipelines.export import export_onnx
from imdb_sentiment.serving.predictor import Predictor

CLI = Path(sys.executable).with_name("imdb-sentiment")
TRAIN_SETTINGS = {
    "cnn": ["model.params.embeddings=random", "model.params.embedding_dim=16", "model.params.max_length=32",
            "model.params.min_freq=1", "model.params.num_filters=8", "training.learning_rate=1e-2"],
    "hf": ["model.params.from_scratch=true", "model.params.hidden_size=32", "model.params.num_layers=1",
           "model.params.num_heads=2", "model.params.intermediate_size=64", "model.params.max_length=32",
           "model.params.pooling=mean", "training.learning_rate=5e-3"],
    "fasttext": ["model.params.embeddings=random", "model.params.embedding_dim=16", "model.params.max_length=32",
                 "model.params.min_freq=1", "model.params.buckets=1024", "training.learning_rate=5e-2"],
}  # fmt: skip
THREE_CLASS_RUNS = {"fasttext"}  # trained on negative / neutral / positive reviews (a CSV)
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
    """model name -> a finished tiny run, each trained once per module through the real pipeline, in this
    process (three CLI processes cost three torch + transformers start-ups; the CLI's own promises are
    tested below through the real process)."""
    root = tmp_path_factory.mktemp("onnx")
    write_tiny_parquet_imdb(root / "imdb", size=48)
    write_three_class_table(root / "three-classes.csv", size=60)
    found = {}
    for name, settings in TRAIN_SETTINGS.items():
        data = root / ("three-classes.csv" if name in THREE_CLASS_RUNS else "imdb")
        overrides = [f"model.name={name}", f"data.path={json.dumps(str(data))}",
                     f"output_dir={json.dumps(str(root / name))}", *settings,
                     "training.epochs=4", "training.batch_size=8", "training.threads=1"]  # fmt: skip
        found[name] = run_experiment(configure({}, overrides), show_progress=False).run_dir
    return found


def write_three_class_table(file: Path, size: int) -> None:
    reviews = tiny_three_class_reviews(size, 0)
    with open(file, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(
            (text, THREE_CLASSES.name_of(label)) for text, label in zip(reviews.texts, reviews.labels, strict=True)
        )


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


@pytest.mark.parametrize("name", ["cnn", "hf", "fasttext"])
def test_fp32_graph_gives_the_pytorch_probabilities(exported, name) -> None:
    import onnx

    run = exported[name]
    manifest = json.loads((run / ONNX_DIR / ONNX_MANIFEST).read_text())
    assert manifest["precision"] == "fp32" and manifest["quantization"] is None and manifest["model"] == name
    assert manifest["max_abs_diff_vs_pytorch"] < 1e-3  # over every class probability
    classes = THREE_CLASSES if name in THREE_CLASS_RUNS else SENTIMENT
    assert manifest["classes"] == list(classes.names)
    speed = manifest["speed_vs_pytorch"]  # measured at export (never asserted: timings vary by machine)
    assert speed["pytorch_ms"] > 0 and speed["onnx_ms"] > 0 and speed["threads"] == 1
    # torch.onnx exports nn.EmbeddingBag (fastText) as a Loop over reviews, ~20x slower than PyTorch:
    # the exporter swaps it for a Gather and reductions; no graph runs a per-review loop.
    operators = {node.op_type for node in onnx.load(str(run / ONNX_DIR / "model.onnx")).graph.node}
    assert not operators & {"Loop", "Scan", "SequenceEmpty"}, operators
    pytorch, onnx = Predictor.from_run(run), Predictor.from_run(run, onnx=True)
    assert (pytorch.backend, onnx.backend) == ("native", "onnxruntime fp32")
    assert onnx.model.classes == pytorch.model.classes == classes
    for batch_size in (1, 8):  # alone, and batched with padding in length-sorted batches
        expected = pytorch.predict_proba(TEXTS, batch_size=batch_size)
        found = onnx.predict_proba(TEXTS, batch_size=batch_size)
        assert found.shape == (len(TEXTS), classes.size) and np.allclose(found.sum(axis=1), 1.0)
        assert np.abs(found - expected).max() < 1e-3
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


# ------------------------------------------------------------------------- hostile files, through the CLI
def cli_refuses(run: Path, *args: str, fragment: str) -> str:
    """The real CLI exits 2 with one plain line (no traceback, no ANSI styling) containing ``fragment``."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "1000"}
    result = subprocess.run(
        [str(CLI), "predict", str(run), *args, "great"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and "weights_only" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    return result.stderr


def replace_graph(run: Path, content: bytes) -> None:
    """A graph the manifest vouches for (its sha256 updated, as someone who swaps files would)."""
    graph = run / ONNX_DIR / "model.onnx"
    graph.write_bytes(content)
    manifest_file = run / ONNX_DIR / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["model.onnx"] = sha256_file(graph)
    manifest_file.write_text(json.dumps(manifest))


def test_a_graph_that_cannot_be_loaded_is_one_line(exported, tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    run = copy_run(exported["cnn"], tmp_path)
    replace_graph(run, os.urandom(512))
    cli_refuses(run, "--onnx", fragment="not a readable ONNX graph")

    weight = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "weight")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../../etc/passwd"), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
              for name in ("input_ids", "attention_mask")]  # fmt: skip
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 2])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["weight"], ["logits"])], "g", inputs, [output], [weight]
    )
    replace_graph(run, helper.make_model(graph).SerializeToString())
    assert onnx.load(str(run / ONNX_DIR / "model.onnx"), load_external_data=False).graph.initializer
    cli_refuses(run, "--onnx", fragment="keeps weights in external files")


def test_crafted_pickles_in_weight_files_are_refused_in_one_line(runs, tmp_path) -> None:
    """network.pt (word models) and a transformers pytorch_model.bin hold a pickle that would write a
    marker file if it ran: refused by weights-only loading, in one plain line."""
    marker = tmp_path / "PICKLE-RAN"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    for name, relative in (("cnn", "network.pt"), ("hf", "hf_model/pytorch_model.bin")):
        run = copy_run(runs[name], tmp_path)
        model_dir = run / "model"
        for weights in model_dir.glob("hf_model/*.safetensors"):
            weights.unlink()  # transformers then reads pytorch_model.bin
        target = model_dir / relative
        target.write_bytes(pickle.dumps({"weight": Payload()}))
        manifest = json.loads((model_dir / "manifest.json").read_text())
        manifest["files"] = {key: value for key, value in manifest["files"].items() if (model_dir / key).is_file()}
        manifest["files"][relative] = sha256_file(target)
        (model_dir / "manifest.json").write_text(json.dumps(manifest))
        cli_refuses(run, fragment="holds pickled Python objects")
    assert not marker.exists()


def test_a_serving_backend_is_one_registered_loader(runs, monkeypatch) -> None:
    from imdb_sentiment.models.base import SentimentModel
    from imdb_sentiment.serving.backends import (
        BACKEND_MODULES,
        NativeBackend,
        ServingBackend,
        register_serving_backend,
    )

    class HalfPrecisionBackend(NativeBackend):
        """The run's PyTorch network in bf16 (what an OpenVINO or TensorRT module would look like)."""

        name = "torch bf16"

        def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                return super().predict_proba(texts, batch_size)

    monkeypatch.setitem(BACKEND_MODULES, "torch-bf16", __name__)  # its one registration line
    register_serving_backend("torch-bf16")(
        lambda run, config: HalfPrecisionBackend(SentimentModel.load(run / "model"), config)
    )
    predictor = Predictor.from_run(runs["cnn"], backend="torch-bf16")
    assert predictor.backend == "torch bf16" and isinstance(predictor.runner, ServingBackend)
    expected = Predictor.from_run(runs["cnn"]).predict_proba(TEXTS)
    assert np.abs(predictor.predict_proba(TEXTS) - expected).max() < 0.05
    one_line_user_error(
        lambda: Predictor.from_run(runs["cnn"], backend="tensorrt"), "No serving backend 'tensorrt'"
    )
