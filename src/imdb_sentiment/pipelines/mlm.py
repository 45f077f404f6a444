"""Masked-language-model pre-training on unlabeled reviews (never the test split).

Two uses:

- ``bert-scratch``: a random BERT learns the language of movie reviews before it sees a label
  (Devlin et al. 2019), on the 50,000 unlabeled reviews plus the training reviews' text;
- ``minilm`` (or any encoder folder): continued, in-domain pre-training (Gururangan et al. 2020,
  "Don't Stop Pretraining").

Reviews are tokenised whole, concatenated and cut into blocks of ``max_length`` tokens (no padding
wasted, no review truncated); ``DataCollatorForLanguageModeling`` masks 15% of the tokens;
``transformers.Trainer`` runs the steps. The output is a Hugging Face folder (weights + tokenizer +
``mlm.json``) that the classifiers take as ``model.params.init_from``.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from imdb_sentiment.errors import JobStopped, UserError
from imdb_sentiment.io_utils import staged_dir
from imdb_sentiment.training import preemption
from imdb_sentiment.training.preemption import TrainingStopped, stop_on_sigterm

logger = logging.getLogger("imdb_sentiment.training")

SUMMARY_FILE = "mlm.json"


@dataclass
class MLMSettings:
    model: str = "bert-scratch"  # bert-scratch | minilm | a folder / hub id of an encoder
    output: Path = Path("pretrained/mlm")
    max_length: int = 128
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float | None = None  # default: 5e-4 from scratch, 5e-5 when continuing
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    mlm_probability: float = 0.15
    eval_fraction: float = 0.02  # held-out blocks for the reported MLM loss / perplexity
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # bert-scratch architecture and vocabulary (same meaning as the bert-scratch model params)
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    vocab: Literal["minilm", "train"] = "minilm"
    vocab_size: int = 16000
    threads: int | None = None  # torch CPU threads (default: all cores)
    show_progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in mlm.json (data source etc.)

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.model == "bert-scratch" else 5e-5


def build_mlm_model(settings: MLMSettings, texts: list[str]) -> tuple[Any, Any]:
    """(tokenizer, masked-LM model) for ``settings.model``."""
    from pydantic import ValidationError
    from transformers import AutoModelForMaskedLM, BertForMaskedLM

    from imdb_sentiment.config import format_validation_error
    from imdb_sentiment.models.hf.backbone import scratch_bert_config
    from imdb_sentiment.models.hf.encoder import load_tokenizer, train_wordpiece_tokenizer
    from imdb_sentiment.models.hf.hub import (
        from_pretrained_errors,
        minilm_path,
        quiet_transformers,
        resolve_pretrained,
    )
    from imdb_sentiment.models.hf.params import BertScratchParams

    if settings.model == "bert-scratch":
        if settings.hidden_size % settings.num_heads:
            raise UserError(f"--num-heads {settings.num_heads} must divide --hidden-size {settings.hidden_size}.")
        try:  # the same sizes, with the same bounds, as the bert-scratch classifier it will initialise
            architecture = BertScratchParams(
                hidden_size=settings.hidden_size, num_layers=settings.num_layers, num_heads=settings.num_heads,
                intermediate_size=settings.intermediate_size,
                max_position_embeddings=max(512, settings.max_length),
            ).scratch_architecture()  # fmt: skip
        except ValidationError as exc:
            raise UserError(format_validation_error(exc)) from None
        if settings.vocab == "train":
            tokenizer = train_wordpiece_tokenizer(texts, settings.vocab_size)
        else:
            tokenizer = load_tokenizer(minilm_path())
        config = scratch_bert_config(len(tokenizer), tokenizer.pad_token_id, architecture)
        return tokenizer, BertForMaskedLM(config)
    source = str(minilm_path()) if settings.model == "minilm" else settings.model
    name, kwargs = resolve_pretrained(source, "--model")
    with from_pretrained_errors(source, "--model"), quiet_transformers():
        tokenizer = load_tokenizer(name, **kwargs)
        model = AutoModelForMaskedLM.from_pretrained(name, **kwargs)
    return tokenizer, model


def make_blocks(encoder: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """Concatenate whole reviews (separator between them) and cut into framed blocks of max_length."""
    body = max_length - len(encoder.prefix) - len(encoder.suffix)
    separator = encoder.suffix[-1:] or []  # [SEP] / </s> between reviews
    stream: list[int] = []
    for ids in encoder.tokenize(texts):
        stream.extend(ids.tolist())
        stream.extend(separator)
    blocks = [
        encoder.prefix + stream[start : start + body] + encoder.suffix for start in range(0, len(stream), body)
    ]
    # A short last block is padding mostly: drop it unless it is all there is.
    if len(blocks) > 1 and len(blocks[-1]) < max_length // 2:
        blocks.pop()
    return blocks


class _Blocks:
    """A list-backed dataset of token blocks with their special-token masks (the collator needs them)."""

    def __init__(self, blocks: list[list[int]], special: set[int]) -> None:
        self.blocks = blocks
        self.special = special

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ids = self.blocks[index]
        return {"input_ids": ids, "special_tokens_mask": [int(i in self.special) for i in ids]}


def pretrain_mlm(texts: list[str], settings: MLMSettings) -> dict[str, Any]:
    """Pre-train and write ``settings.output``; returns the summary also written to ``mlm.json``."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder
    from imdb_sentiment.models.hf.hub import quiet_transformers
    from imdb_sentiment.training.runtime import Runtime, seed_everything

    if not texts:
        raise UserError("No texts to pre-train on.")
    if settings.max_length < 8:
        raise UserError("--max-length must be at least 8.")
    output = Path(settings.output)
    if output.exists() and any(output.iterdir()):
        raise UserError(f"--output {output} exists and is not empty; choose a new folder.")
    runtime = Runtime.resolve(precision=settings.precision, threads=settings.threads).apply()
    seed_everything(settings.seed)
    tokenizer, model = build_mlm_model(settings, texts)
    encoder = HFTokenizerEncoder(tokenizer, max_length=settings.max_length)
    blocks = make_blocks(encoder, texts, settings.max_length)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(blocks))
    held = min(max(1, int(len(blocks) * settings.eval_fraction)), 2000) if len(blocks) > 10 else 0
    special = set(tokenizer.all_special_ids)
    train_set = _Blocks([blocks[i] for i in order[held:]], special)
    eval_set = _Blocks([blocks[i] for i in order[:held]], special) if held else None

    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=settings.mlm_probability, pad_to_multiple_of=8, seed=settings.seed
    )
    # SIGTERM (a cluster pre-empting the job) at any stage: exit 143 in one line, and --output never holds
    # a half-written model: it is built as <output>.tmp and renamed into place only once complete.
    try:
        with stop_on_sigterm():
            preemption.stage("MLM pre-training")
            trainer, train_output, seconds, eval_loss = _train(model, tokenizer, collator, train_set, eval_set,
                                                               settings, runtime)  # fmt: skip
            preemption.stage("saving the model")
            model = trainer.model.to(torch.device("cpu"))
            summary = {
                "model": settings.model,
                "architecture": type(model).__name__,
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "texts": len(texts),
                "train_blocks": len(train_set),
                "eval_blocks": held,
                "block_tokens": settings.max_length,
                "steps": int(trainer.state.global_step),
                "train_loss": float(train_output.training_loss),
                "eval_loss": eval_loss,
                "eval_perplexity": math.exp(eval_loss) if eval_loss == eval_loss and eval_loss < 50 else math.nan,
                "train_seconds": seconds,
                "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
            }
            output.parent.mkdir(parents=True, exist_ok=True)
            with staged_dir(output, "writing", "run pretrain-mlm again") as staging, quiet_transformers():
                model.save_pretrained(str(staging))  # quiet: no "Writing model shards" bar
                tokenizer.save_pretrained(str(staging))
                (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    except TrainingStopped as stopped:
        raise JobStopped(
            f"stopped by SIGTERM during {stopped.stage}; nothing was written to {output} (pre-training keeps "
            "no checkpoint): run the same command again."
        ) from None
    return summary


def _train(model: Any, tokenizer: Any, collator: Any, train_set: _Blocks, eval_set: _Blocks | None,
           settings: MLMSettings, runtime: Any) -> tuple[Any, Any, float, float]:  # fmt: skip
    """Hugging Face Trainer over the blocks: (trainer, its train output, seconds, held-out loss or NaN)."""
    from transformers import Trainer

    from imdb_sentiment.training.hf_trainer import base_training_arguments

    with tempfile.TemporaryDirectory(prefix="imdb-mlm-") as scratch:
        args = base_training_arguments(
            Path(scratch),
            runtime,
            settings.seed,
            settings.show_progress,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps or -1,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.batch_size,
            learning_rate=settings.resolved_learning_rate(),
            warmup_steps=settings.warmup_ratio,
            weight_decay=settings.weight_decay,
            lr_scheduler_type="linear",
            save_strategy="no",
            eval_strategy="no",
            logging_steps=50,
            report_to="none",
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_set, data_collator=collator)
        if not settings.show_progress:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        train_output = trainer.train()
        seconds = time.perf_counter() - started
        eval_loss = float(trainer.evaluate(eval_set)["eval_loss"]) if eval_set is not None else math.nan
    return trainer, train_output, seconds, eval_loss


def pretraining_texts(
    data: str | None, include_train: bool = True, limit: int | None = None, seed: int = 42
) -> tuple[list[str], dict[str, Any]]:
    """Unlabeled reviews (+ the training reviews' text), never the test split; seeded ``limit``."""
    from imdb_sentiment.config import DataConfig
    from imdb_sentiment.data import read_dataset, resolve_data_path

    spec = DataConfig(path=data, seed=seed)
    splits = read_dataset(resolve_data_path(spec.path), spec)
    texts: list[str] = []
    sources = []
    if splits.unsup is not None and len(splits.unsup):
        texts += splits.unsup.texts
        sources.append(f"unsup ({len(splits.unsup)})")
    if include_train and splits.train is not None:
        texts += splits.train.texts
        sources.append(f"train ({len(splits.train)})")
    if not texts:
        raise UserError(f"{splits.source}: no unlabeled or training texts to pre-train on.")
    if limit is not None and limit < len(texts):
        chosen = np.sort(np.random.default_rng(seed).choice(len(texts), size=limit, replace=False))
        texts = [texts[i] for i in chosen]
    return texts, {"source": splits.source, "parts": sources, "texts_used": len(texts)}
