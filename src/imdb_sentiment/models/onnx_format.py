"""A run's ONNX export on disk, shared by the exporter (pipelines/export.py) and the onnxruntime
backend (serving/onnx_backend.py), so that serving never imports the exporter.

``RUN/onnx/`` holds the graph (``model.onnx``, weights inside it: never external data),
``export.json`` saying what it is (precision, sequence length) and ``manifest.json`` (io_utils' one
integrity format: every file's sha256, tied to the run; checked by the caller through
``RunFolder.verify_saved`` before :func:`read_export`). The graph takes
int64 ``input_ids`` and ``attention_mask`` of shape (batch, sequence) and returns ``logits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import read_json

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
ONNX_MANIFEST = "export.json"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
_REQUIRED = ("file", "precision", "sequence_length")


def pad_to_length(batch: dict[str, Any], length: int | None, pad_id: int) -> dict[str, np.ndarray]:
    """The graph's inputs as int64 arrays, right-padded to ``length`` when the graph has a fixed
    sequence length (padding never changes a prediction: every network masks it)."""
    arrays = {name: np.asarray(batch[name], dtype=np.int64) for name in INPUT_NAMES}
    if length is not None:
        missing = length - arrays["input_ids"].shape[1]
        if missing < 0:
            raise ValueError(f"a batch of width {arrays['input_ids'].shape[1]} exceeds the graph's {length}")
        arrays["input_ids"] = np.pad(arrays["input_ids"], ((0, 0), (0, missing)), constant_values=pad_id)
        arrays["attention_mask"] = np.pad(arrays["attention_mask"], ((0, 0), (0, missing)))
    return arrays


def read_export(run_dir: Path, folder: Path | None = None) -> tuple[dict[str, Any], Path]:
    """(export.json, graph file) of the export in RUN/onnx/ (or ``folder``); anything missing or
    unreadable is one UserError line (the files' digests are checked by the caller, see above)."""
    folder = Path(folder) if folder is not None else Path(run_dir) / ONNX_DIR
    manifest_file = folder / ONNX_MANIFEST
    again = f"run `imdb-sentiment export {run_dir} --onnx` again."
    if not manifest_file.is_file():
        raise UserError(f"{run_dir} has no ONNX export; run `imdb-sentiment export {run_dir} --onnx` first.")
    manifest = read_json(manifest_file, again.removesuffix("."))
    if any(key not in manifest for key in _REQUIRED):
        raise UserError(f"{manifest_file} is not an export manifest (needs {', '.join(_REQUIRED)}); {again}")
    graph = folder / str(manifest["file"])
    if graph.parent.resolve() != folder.resolve() or not graph.is_file():
        raise UserError(
            f"{manifest_file} names a graph file {manifest['file']!r} that is not in {folder}; {again}"
        )
    return manifest, graph


def check_graph(graph: Path) -> None:
    """The file parses as an ONNX model whose weights are all inside it. Our exports never use
    external data; a graph that points at other files (``../../secret``, or files the manifest's
    sha256 does not cover) is refused before onnxruntime opens anything."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        model = onnx.load(str(graph), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise UserError(
            f"{graph} is not a readable ONNX graph ({type(exc).__name__}); export the run again."
        ) from None
    external = [tensor.name for tensor in _get_all_tensors(model) if uses_external_data(tensor)]
    if external:
        raise UserError(
            f"{graph} keeps weights in external files ({', '.join(external[:3])}); exports of this tool hold "
            "them inside the graph: export the run again."
        )
    names = tuple(value.name for value in model.graph.input)
    if names != INPUT_NAMES:
        raise UserError(
            f"{graph} takes inputs {', '.join(names) or 'none'}, not {', '.join(INPUT_NAMES)}; export again."
        )


def open_session(graph: Path, threads: int) -> Any:
    """An onnxruntime CPU session of ``graph`` (checked first); its load errors are one line."""
    import onnxruntime as ort

    check_graph(graph)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UserError(f"onnxruntime cannot load {graph} ({reason}); export the run again.") from None
