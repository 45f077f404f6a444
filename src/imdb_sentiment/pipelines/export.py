"""Export a finished run for serving: ``--merge`` folds a LoRA adapter into its base weights, giving
an ordinary run folder (no adapter, no extra latency) that predicts the same; ``--onnx`` writes the
network as an ONNX graph (fp32 or int8) into the run folder, for onnxruntime (serving/onnx_backend.py)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from imdb_sentiment.config import dump_config
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import (
    ensure_writable_dir,
    staged_dir,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.onnx_format import (
    INPUT_NAMES,
    ONNX_DIR,
    ONNX_FILE,
    ONNX_MANIFEST,
    OUTPUT_NAME,
    pad_to_length,
)
from imdb_sentiment.models.pooling import MeanOfEmbeddings
from imdb_sentiment.models.torch_base import TorchTextClassifier
from imdb_sentiment.runs import RunFolder, now_utc, save_model_atomically, write_status

COPIED = ("metrics.json", "data.json", "environment.json", "predictions.csv")


def export_merged(run_dir: Path, output: Path | None = None) -> Path:
    run = RunFolder.finished(run_dir)
    run_dir, config = run.path, configure(run.raw_config(), for_training=False)
    if not config.model.params.get("adapter"):
        raise UserError(f"{run_dir} has no adapter to merge (model.params.adapter is not set).")
    run.verify_model()
    model = SentimentModel.load(run.model_dir)
    merged_model = getattr(model, "merged", None)
    if merged_model is None:
        raise UserError(f"{config.model.name} models cannot merge an adapter.")
    merged = merged_model()
    target = Path(output) if output is not None else run_dir.with_name(run_dir.name + "-merged")
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} exists and is not empty; pass another --output.")
    raw = config.model_dump(mode="json")
    raw["model"]["params"]["adapter"] = None
    with staged_dir(target, "merging into", "merge again") as staging:  # never a half-written folder
        ensure_writable_dir(staging)
        write_text_atomic(staging / "config.yaml", dump_config(configure(raw, for_training=False)))
        for name in COPIED:  # the merged model predicts what the run predicted: its results still hold
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
        save_model_atomically(merged, staging)
        write_status(staging, "completed", finished=now_utc(), exported_from=str(run_dir), export="merge")
    return target


# ------------------------------------------------------------------------------------------ ONNX
# ``export RUN --onnx`` writes RUN/onnx/: the graph (model.onnx), export.json saying what it is and
# manifest.json (io_utils' integrity format: both files' sha256, tied to the run like model/).
# A run holds one ONNX export; exporting again replaces it (staged in onnx.tmp/, then renamed).
ONNX_OPSET = 18
# What an fp32 graph may differ from PyTorch in any class probability before the export is refused.
FP32_TOLERANCE = 1e-3
# Reviews of varied lengths that every export is checked on, against the PyTorch network.
_CHECK_TEXTS = (
    "good",
    "a terrible film, boring from start to end and badly acted " * 3,
    "one of the best movies I have ever seen: wonderful story, great actors. " * 60,
)


class LogitsGraph(nn.Module):
    """Thin wrapper for the exporter: the networks read a batch dict and return a NetworkOutput; a
    graph takes named tensors and returns one. Chunk pooling (hf chunk_and_pool) stays outside the
    graph: the graph scores windows, onnx_backend pools them the way HFNetwork does."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.network({"input_ids": input_ids, "attention_mask": attention_mask}).logits


def graph_friendly(network: nn.Module) -> nn.Module:
    """A copy of ``network`` in which modules whose ONNX form is slow are replaced by equivalents:
    torch.onnx turns ``nn.EmbeddingBag`` into a Loop that runs once per review (fastText's graph was
    ~20x slower on onnxruntime than PyTorch); :class:`MeanOfEmbeddings` is one Gather and two
    reductions. The export check still compares the graph with the original network."""
    network = copy.deepcopy(network)
    for name, module in list(network.named_modules()):
        if isinstance(module, nn.EmbeddingBag) and module.mode == "mean":
            parent_name, _, child = name.rpartition(".")
            setattr(
                network.get_submodule(parent_name) if parent_name else network, child, MeanOfEmbeddings(module)
            )
    return network


def exportable_model(run_dir: Path) -> TorchTextClassifier:
    """The run's model, if its network can become an ONNX graph; else one clear UserError."""
    run = RunFolder.finished(run_dir)
    config = configure(run.raw_config(), for_training=False)
    name, params = config.model.name, config.model.params
    if params.get("adapter"):
        raise UserError(
            f"{run_dir} has an adapter: ONNX export takes a plain network. For LoRA, run "
            f"`imdb-sentiment export {run_dir} --merge` and export the merged run."
        )
    if params.get("quantize_base"):
        raise UserError(
            "An int8 (torchao) base cannot be exported to ONNX; export a run trained without quantize_base."
        )
    run.verify_model()
    model = SentimentModel.load(run.model_dir)
    if not model.capabilities.exportable_to_onnx or not isinstance(model, TorchTextClassifier):
        raise UserError(
            f"{name} is not a PyTorch model: ONNX export is for the word models and hf / minilm / bert-scratch."
        )
    return model


def export_onnx(
    run_dir: Path, quantize: Literal["int8"] | None = None, optimize: bool = False, output: Path | None = None
) -> Path:
    """Export a run's network to ONNX (fp32, or dynamically quantised int8) into RUN/onnx/ (or
    ``output``) and check it against PyTorch; ``optimize``: fuse a transformer's LayerNorm / GELU
    (onnxruntime.transformers). Returns the folder."""
    run = RunFolder.finished(run_dir)
    run_dir, model = run.path, exportable_model(run.path)
    assert model.encoder is not None and model.network is not None
    backbone_config = getattr(getattr(model.network, "backbone", None), "config", None)
    if optimize and backbone_config is None:
        raise UserError(
            f"--optimize fuses transformer layers: it is for hf / minilm / bert-scratch runs, not {model.name}."
        )
    # The wrapper in eval mode too: the TorchScript exporter restores the wrapper's mode afterwards,
    # recursively, which would switch the network's dropout on for the parity check.
    network = LogitsGraph(model.network.float().cpu()).eval()
    exported = LogitsGraph(graph_friendly(model.network)).eval()
    target = Path(output) if output is not None else run_dir / ONNX_DIR
    with staged_dir(target, "exporting into", "export again") as staging:
        ensure_writable_dir(staging)
        graph = staging / ONNX_FILE
        fp32 = staging / "fp32.onnx" if quantize else graph
        sequence_length = _export_graph(exported, model, fp32, for_fusion=optimize)
        fused_operators = None
        if optimize:
            _optimize_transformer(fp32, backbone_config)
            fused_operators = _fused_operators(fp32)  # before int8 turns Attention into QAttention
        if quantize:
            _quantize_int8(fp32, graph)
            fp32.unlink()
        difference = _check_against_pytorch(network, model, graph, sequence_length)
        speed = _speed_against_pytorch(network, model, graph, sequence_length)
        if quantize is None and difference > FP32_TOLERANCE:
            raise UserError(
                f"The ONNX graph of {model.name} does not reproduce PyTorch (max |probability difference| "
                f"{difference:.2g} > {FP32_TOLERANCE}); serve this run with PyTorch."
            )
        write_json_atomic(
            staging / ONNX_MANIFEST,
            _manifest(model, run_dir, graph, quantize, sequence_length, difference, fused_operators)
            | {"speed_vs_pytorch": speed},
        )
        write_manifest(staging, **run.tie(model.name))
    return target


def _example_batch(model: TorchTextClassifier, texts: tuple[str, ...]) -> dict[str, torch.Tensor]:
    assert model.encoder is not None
    return model.encoder.collate([{"input_ids": ids} for ids in model.encoder.encode(list(texts))])


def _export_graph(
    network: LogitsGraph, model: TorchTextClassifier, path: Path, for_fusion: bool = False
) -> int | None:
    """Export with dynamic batch and sequence axes; returns the graph's sequence length when the
    exporter had to fix it (e.g. a max-pool with ceil_mode), else None.

    ``for_fusion``: onnxruntime's transformer optimizer fuses attention only in the graph the
    TorchScript exporter makes of eager attention (in a dynamo graph, or one of SDPA, it finds 0 of 6
    MiniLM layers), so that exporter and eager attention are used; the example holds padding, or the
    trace would drop the attention mask."""
    import onnx

    # The example is as long as the model reads (max_length), so a fixed sequence axis fits every input.
    example = _example_batch(model, (_CHECK_TEXTS[2], _CHECK_TEXTS[0]))
    inputs = (example["input_ids"], example["attention_mask"])
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with _quiet():
            if for_fusion:
                network.network.backbone.set_attn_implementation("eager")
                torch.onnx.export(
                    network, inputs, str(path), dynamo=False, opset_version=ONNX_OPSET,
                    input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                    dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}, "logits": {0: "batch"}},
                )  # fmt: skip
            else:
                torch.onnx.export(
                    network, inputs, str(path), dynamo=True, external_data=False, opset_version=ONNX_OPSET,
                    input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], verbose=False,
                    dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES},
                )  # fmt: skip
    except Exception as exc:  # the exporter's errors are long and internal: one line, the cause kept
        raise UserError(
            f"{model.name} cannot be exported to ONNX ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    if dims[0].dim_value:
        raise UserError(f"{model.name}: the ONNX exporter fixed the batch size; this network cannot be exported.")
    return dims[1].dim_value or None


def _optimize_transformer(path: Path, config: Any) -> None:
    """onnxruntime.transformers' BERT fusions (embedding + LayerNorm, Attention, SkipLayerNormalization,
    BiasGelu), in place, on a graph exported ``for_fusion``."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        optimized = optimize_model(
            str(path), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
            opt_level=0,
        )  # fmt: skip
        optimized.save_model_to_file(str(path))


def _fused_operators(graph: Path) -> dict[str, int]:
    """How many of each fused transformer operator the graph holds (the fusion's proof)."""
    import onnx

    fused = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")
    counts: dict[str, int] = {}
    for node in onnx.load(str(graph), load_external_data=False).graph.node:
        if node.op_type in fused:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 (weights int8 per output channel, activations quantised on the fly): needs no
    calibration data and suits CPUs; onnxruntime.quantization does it all."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference: say float.
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter and the quantiser print progress, warnings and log lines (missing torchvision,
    "consider pre-processing") that say nothing about this export: keep them off the console."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_against_pytorch(
    network: LogitsGraph, model: TorchTextClassifier, graph: Path, sequence_length: int | None
) -> float:
    """Max |difference| of any class probability between the graph and the PyTorch network on reviews
    of varied lengths, batched together (padding included) and one at a time."""
    import onnxruntime as ort

    assert model.encoder is not None
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    worst = 0.0
    for texts in (_CHECK_TEXTS, *((text,) for text in _CHECK_TEXTS)):
        batch = _example_batch(model, texts)
        with torch.no_grad():
            expected = torch.softmax(network(batch["input_ids"], batch["attention_mask"]).double(), -1)
        logits = session.run(None, pad_to_length(batch, sequence_length, model.encoder.pad_id))[0]
        found = torch.softmax(torch.from_numpy(logits).double(), -1)
        if found.shape != expected.shape:  # a graph with another number of outputs reproduces nothing
            return float("inf")
        worst = max(worst, float((found - expected).abs().max()))
    return worst


def _speed_against_pytorch(
    network: LogitsGraph, model: TorchTextClassifier, graph: Path, sequence_length: int | None
) -> dict[str, Any]:
    """Milliseconds per batch of 8 reviews as long as the model reads, PyTorch and the graph on one
    thread each (after a warm-up): what a user needs to know before serving the graph instead of the
    network (a graph can be slower when an operator has no fused ONNX form). The ids are drawn at
    random over the vocabulary: the repetitive check reviews would keep an embedding lookup in cache
    and flatter it. Small on purpose: a BERT-base export pays seconds for it, not minutes."""
    import onnxruntime as ort

    assert model.encoder is not None
    shape = _example_batch(model, (_CHECK_TEXTS[2],) * 8)["input_ids"].shape
    embeddings = next(m for m in network.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, embeddings.num_embeddings, shape, generator=generator)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs = pad_to_length(batch, sequence_length, model.encoder.pad_id)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timings = {}
        for name, run in (
            ("pytorch_ms", lambda: network(batch["input_ids"], batch["attention_mask"])),
            ("onnx_ms", lambda: session.run(None, inputs)),
        ):
            with torch.no_grad():
                run()  # warm-up
                timings[name] = round(_seconds(run) * 1000, 2)
    finally:
        torch.set_num_threads(threads)
    return {
        "batch": 8,
        "tokens": int(shape[1]),
        "threads": 1,
        **timings,
        "onnx_over_pytorch": round(timings["onnx_ms"] / timings["pytorch_ms"], 2),
    }


def _seconds(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _manifest(
    model: TorchTextClassifier, run_dir: Path, graph: Path, quantize: str | None, sequence_length: int | None,
    difference: float, fused_operators: dict[str, int] | None,
) -> dict[str, Any]:  # fmt: skip
    import onnx
    import onnxruntime

    return {
        "format": "onnx",
        "file": ONNX_FILE,
        "model": model.name,
        "run": str(run_dir),
        "precision": quantize or "fp32",
        "quantization": {"method": "dynamic", "weights": "int8", "per_channel": True} if quantize else None,
        "opset": ONNX_OPSET,
        "exporter": f"torch.onnx.export ({'dynamo' if fused_operators is None else 'TorchScript, eager attention'}), torch {torch.__version__}",
        "fused_operators": fused_operators,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "inputs": list(INPUT_NAMES),
        "output": OUTPUT_NAME,
        "classes": list(model.classes.names),  # the logits' columns, in order
        "sequence_length": sequence_length,  # None: any length up to the model's max_length
        "max_length": model.params.max_length,
        "max_abs_diff_vs_pytorch": difference,  # any class probability, on the export check's reviews
        "bytes": graph.stat().st_size,
        "exported": now_utc(),
    }
