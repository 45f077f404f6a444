"""The ``onnx`` serving backend: a run's ONNX export (``imdb-sentiment export RUN --onnx``) on onnxruntime.

:class:`OnnxModel` predicts like the run's PyTorch model: the run's own encoder turns texts into ids
and batches them exactly as in PyTorch (length-sorted, dynamic padding), onnxruntime runs the graph,
and chunk pooling and the softmax are the PyTorch models' own (models/pooling.py,
training/inference.py). The PyTorch network itself is never loaded. The export's file layout and
checks live in models/onnx_format.py, shared with the exporter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import MANIFEST_FILE, read_json
from imdb_sentiment.models.onnx_format import ONNX_DIR, open_session, pad_to_length, read_export
from imdb_sentiment.models.pooling import pool_chunks
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.models.torch_base import TorchTextClassifier
from imdb_sentiment.runs import RunFolder
from imdb_sentiment.serving.backends import register_serving_backend
from imdb_sentiment.training.batching import EncodedDataset, make_loader
from imdb_sentiment.training.inference import softmax

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig


class OnnxModel:
    """An exported graph behind the :class:`~imdb_sentiment.serving.backends.ServingBackend` shape."""

    def __init__(
        self, classifier: TorchTextClassifier, session: Any, manifest: dict[str, Any], config: ExperimentConfig
    ) -> None:
        # ``classifier`` holds the run's encoder only (no network): it encodes, batches and counts
        # known tokens exactly as the PyTorch model does.
        self.classifier, self.session, self.manifest, self.config = classifier, session, manifest, config
        self.params = classifier.params
        self.classes = classifier.classes

    @property
    def name(self) -> str:
        return f"onnxruntime {self.manifest['precision']}"

    @classmethod
    def load(
        cls, run_dir: Path, config: ExperimentConfig, threads: int | None = None, folder: Path | None = None
    ) -> OnnxModel:
        """The export in RUN/onnx/ (or ``folder``), checked against its recorded sha256; ``threads``:
        onnxruntime's intra-op threads (default: as many as PyTorch uses, so both compare fairly)."""
        folder = Path(folder) if folder is not None else Path(run_dir) / ONNX_DIR
        redo = f"export again (imdb-sentiment export {run_dir} --onnx)"
        # Every file against manifest.json (io_utils' integrity format) and the export against this run.
        if (folder / "export.json").is_file() and RunFolder(run_dir).verify_saved(folder, redo) is None:
            raise UserError(f"{folder} has no {MANIFEST_FILE} (exported by an older version): {redo}.")
        manifest, graph = read_export(run_dir, folder)
        meta = read_json(Path(run_dir) / "model" / "model.json", "restore the run folder or train it again")
        classifier = get_model_class(meta["name"])(meta["params"])
        classifier.classes = LabelSpace.from_json(meta.get("classes"))
        assert isinstance(classifier, TorchTextClassifier)
        classifier.encoder = classifier.load_encoder(Path(run_dir) / "model")
        session = open_session(graph, threads or torch.get_num_threads())
        return cls(classifier, session, manifest, config)

    def logits(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """One row of logits per text, in the order given."""
        encoder = self.classifier.encoder
        assert encoder is not None
        loader = make_loader(EncodedDataset(encoder.encode(texts)), encoder, batch_size, shuffle=False)
        assert loader.batch_sampler is not None
        result = np.zeros((len(texts), self.classes.size), dtype=np.float32)
        for rows, batch in zip(loader.batch_sampler, loader, strict=True):
            inputs = pad_to_length(batch, self.manifest["sequence_length"], encoder.pad_id)
            logits = self.session.run(None, inputs)[0]
            if "chunk_index" in batch:  # windows of a review -> their mean, as HFNetwork pools them
                logits = pool_chunks(torch.from_numpy(logits), batch["chunk_index"], len(rows)).numpy()
            result[np.asarray(rows)] = logits
        return result

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return softmax(self.logits(texts, batch_size))

    def predict(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return self.predict_proba(texts, batch_size).argmax(axis=1)

    def known_token_share(self, texts: list[str]) -> np.ndarray | None:
        return self.classifier.known_token_share(texts)


@register_serving_backend("onnx")
def load_onnx(run_dir: Path, config: ExperimentConfig) -> OnnxModel:
    return OnnxModel.load(run_dir, config)
