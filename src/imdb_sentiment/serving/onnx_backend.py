"""Run a run's ONNX export (``imdb-sentiment export RUN --onnx``) with onnxruntime.

:class:`OnnxModel` predicts like the run's PyTorch model (``predict_proba``, ``known_token_share``):
the run's own encoder turns texts into ids and batches them exactly as in PyTorch (length-sorted,
dynamic padding), onnxruntime runs the graph, and chunk pooling and the softmax happen here. The
PyTorch network itself is never loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import MANIFEST_FILE, read_json
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.models.torch_base import TorchTextClassifier
from imdb_sentiment.pipelines.export import ONNX_DIR, ONNX_MANIFEST, pad_to_length
from imdb_sentiment.runs import RunFolder
from imdb_sentiment.training.batching import EncodedDataset, make_loader


class OnnxModel:
    """An exported graph behind the predicting half of the SentimentModel contract."""

    def __init__(self, classifier: TorchTextClassifier, session: Any, manifest: dict[str, Any]) -> None:
        # ``classifier`` holds the run's encoder only (no network): it encodes, batches and counts
        # known tokens exactly as the PyTorch model does.
        self.classifier, self.session, self.manifest = classifier, session, manifest
        self.name = classifier.name
        self.params = classifier.params

    @property
    def backend(self) -> str:
        return f"onnxruntime {self.manifest['precision']}"

    @classmethod
    def load(cls, run_dir: Path, threads: int | None = None, folder: Path | None = None) -> OnnxModel:
        """The export in RUN/onnx/ (or ``folder``), checked against its recorded sha256; ``threads``:
        onnxruntime's intra-op threads (default: as many as PyTorch uses, so both compare fairly)."""
        import onnxruntime as ort
        import torch

        folder = Path(folder) if folder is not None else Path(run_dir) / ONNX_DIR
        manifest_file = folder / ONNX_MANIFEST
        if not manifest_file.is_file():
            raise UserError(f"{run_dir} has no ONNX export; run `imdb-sentiment export {run_dir} --onnx` first.")
        redo = f"export again (imdb-sentiment export {run_dir} --onnx)"
        if RunFolder(run_dir).verify_saved(folder, redo) is None:
            raise UserError(f"{folder} has no {MANIFEST_FILE} (exported by an older version): {redo}.")
        manifest = read_json(manifest_file, redo)
        graph = folder / manifest["file"]
        meta = read_json(Path(run_dir) / "model" / "model.json", "restore the run folder or train it again")
        classifier = get_model_class(meta["name"])(meta["params"])
        assert isinstance(classifier, TorchTextClassifier)
        classifier.encoder = classifier.load_encoder(Path(run_dir) / "model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        return cls(classifier, session, manifest)

    def logits(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """One row of logits per text, in the order given."""
        encoder = self.classifier.encoder
        assert encoder is not None
        loader = make_loader(EncodedDataset(encoder.encode(texts)), encoder, batch_size, shuffle=False)
        assert loader.batch_sampler is not None
        result = np.zeros((len(texts), 2), dtype=np.float32)
        for rows, batch in zip(loader.batch_sampler, loader, strict=True):
            inputs = pad_to_length(batch, self.manifest["sequence_length"], encoder.pad_id)
            logits = self.session.run(None, inputs)[0]
            if "chunk_index" in batch:  # windows of a review -> their mean, as HFNetwork pools them
                index = batch["chunk_index"].numpy()
                sums = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
                np.add.at(sums, index, logits)
                logits = sums / np.maximum(np.bincount(index, minlength=len(rows)), 1)[:, None]
            result[np.asarray(rows)] = logits
        return result

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        logits = self.logits(texts, batch_size).astype(np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return self.predict_proba(texts, batch_size).argmax(axis=1)

    def known_token_share(self, texts: list[str]) -> np.ndarray | None:
        return self.classifier.known_token_share(texts)
