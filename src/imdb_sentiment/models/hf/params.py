"""Settings of the Hugging Face encoders (``hf``, ``minilm``, ``bert-scratch``) and the write-up presets.

The ``resolved_*`` methods turn the written settings (a preset, a checkpoint, ``init_from``,
``from_scratch``) into the one source each part is loaded from, so every caller agrees on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from imdb_sentiment.models.hf.adapters import AdapterConfig
from imdb_sentiment.models.hf.hub import minilm_path
from imdb_sentiment.models.torch_base import TorchParams
from imdb_sentiment.training.runtime import InferencePrecision

PresetName = Literal[
    "bert-native", "bert-trainer", "distilbert-native", "distilbert-trainer", "roberta-trainer", "deberta",
    "bert-scratch",
]  # fmt: skip
Pooling = Literal["model", "cls", "mean"]


@dataclass(frozen=True)
class Preset:
    checkpoint: str | None
    backend: Literal["native", "trainer"]
    from_scratch: bool = False


PRESETS: dict[str, Preset] = {
    "bert-native": Preset("bert-base-uncased", "native"),
    "bert-trainer": Preset("bert-base-uncased", "trainer"),
    "distilbert-native": Preset("distilbert-base-uncased", "native"),
    "distilbert-trainer": Preset("distilbert-base-uncased", "trainer"),
    "roberta-trainer": Preset("roberta-base", "trainer"),
    "deberta": Preset("microsoft/deberta-v3-base", "native"),
    "bert-scratch": Preset(None, "native", from_scratch=True),
}


class HFParams(TorchParams):
    preset: PresetName | None = Field(None, description="A write-up row: checkpoint + backend defaults.")
    checkpoint: str | None = Field(
        None, description="Hub id or local folder. Default: the preset's, else the bundled all-MiniLM-L6-v2."
    )
    tokenizer: str | None = Field(None, description="Tokenizer hub id or folder. Default: the checkpoint's.")
    init_from: str | None = Field(
        None, description="Folder of pretrained weights + tokenizer (e.g. from pretrain-mlm) to start from."
    )
    from_scratch: bool | None = Field(
        None,
        description="Random weights: the checkpoint's architecture if one is named, else a BertConfig "
        "of the sizes below. Default: the preset's, else false.",
    )
    # Architecture of a BERT built from scratch without a checkpoint (bert-scratch).
    hidden_size: int = Field(256, ge=8, le=4096)
    num_layers: int = Field(4, ge=1, le=48)
    num_heads: int = Field(4, ge=1, le=64)
    intermediate_size: int = Field(1024, ge=8)
    max_position_embeddings: int = Field(512, ge=16, le=8192)
    vocab: Literal["minilm", "train"] = Field(
        "minilm", description="From scratch: reuse MiniLM's WordPiece vocab, or train one on the training texts."
    )
    vocab_size: int = Field(16000, ge=100, le=200_000, description="Size of a trained vocabulary.")
    max_length: int = Field(256, ge=8, le=8192, description="Tokens per input, special tokens included.")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="Dropout before our head (pooling cls/mean); None: the checkpoint's."
    )
    attention_dropout: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="Dropout on attention probabilities; None keeps the checkpoint's (0.1 mostly). With 0, "
        "PyTorch's fused attention kernel runs on CPU instead of the masked-softmax + Bernoulli math path.",
    )
    pooling: Pooling = Field(
        "model",
        description="model: the checkpoint's own classification head; cls / mean: a linear head on "
        "the [CLS] state or the mean of the token states.",
    )
    pad_to_multiple_of: int | None = Field(8, ge=1, le=128)
    chunk_and_pool: bool = Field(False, description="Classify overlapping windows, mean-pool their logits.")
    chunk_overlap: int = Field(64, ge=0)
    max_chunks: int = Field(4, ge=1, le=64)
    inference_precision: InferencePrecision = Field(
        "auto",
        description="auto: bf16 where the hardware has it (CUDA, AVX-512-BF16/AMX CPUs), else fp32; "
        "int8: dynamic int8 quantisation of the linear layers, for CPUs without bf16 (on an AMX CPU, MiniLM "
        "at 128 tokens: bf16 108 reviews/s with fp32's labels; int8 62/s, 3.5% labels flipped; fp32 43/s).",
    )
    gradient_checkpointing: bool = False
    freeze_word_embeddings: bool = Field(
        False, description="Keep the word-embedding matrix fixed (about half of MiniLM's weights): faster steps."
    )
    freeze_backbone: bool = Field(
        False, description="Train only the classifier head on the frozen encoder (the floor PEFT must beat)."
    )
    quantize_base: Literal["int8"] | None = Field(
        None,
        description="Hold the frozen base in int8 (torchao weight-only quantisation; CPU and CUDA) under an "
        "adapter or a frozen backbone: about a quarter of the base's fp32 weight memory.",
    )
    adapter: AdapterConfig | None = Field(
        None,
        description="Parameter-efficient fine-tuning: {method: lora | p-tuning | prefix | prompt, ...}; the "
        "base model is frozen and only the adapter (and the head) train and are saved.",
    )

    # ------------------------------------------------------------------------ resolved sources
    @property
    def preset_spec(self) -> Preset | None:
        return PRESETS[self.preset] if self.preset else None

    def resolved_from_scratch(self) -> bool:
        if self.from_scratch is not None:
            return self.from_scratch
        return bool(self.preset_spec and self.preset_spec.from_scratch)

    def resolved_checkpoint(self) -> str | None:
        """The checkpoint to load (or to copy the architecture from, when training from scratch)."""
        if self.checkpoint:
            return self.checkpoint
        if self.preset_spec is not None:
            return self.preset_spec.checkpoint
        return None if self.resolved_from_scratch() else str(minilm_path())

    def resolved_weights(self) -> tuple[str, str] | None:
        """(source, config field) of the pretrained weights; None: random initialisation."""
        if self.init_from:
            return self.init_from, "model.params.init_from"
        if self.resolved_from_scratch():
            return None
        checkpoint = self.resolved_checkpoint()
        return (checkpoint, "model.params.checkpoint") if checkpoint else None

    def resolved_tokenizer(self) -> tuple[str, str] | None:
        """(source, config field) of the tokenizer; None: train a WordPiece vocabulary on the texts."""
        if self.tokenizer:
            return self.tokenizer, "model.params.tokenizer"
        if self.init_from:
            return self.init_from, "model.params.init_from"
        checkpoint = self.resolved_checkpoint()
        if checkpoint:
            return checkpoint, "model.params.checkpoint"
        return (str(minilm_path()), "model.params.vocab") if self.vocab == "minilm" else None

    def scratch_architecture(self) -> dict[str, int]:
        """BertConfig sizes of a from-scratch model without a checkpoint."""
        return {"hidden_size": self.hidden_size, "num_hidden_layers": self.num_layers,
                "num_attention_heads": self.num_heads, "intermediate_size": self.intermediate_size,
                "max_position_embeddings": self.max_position_embeddings}  # fmt: skip


class MiniLMParams(HFParams):
    pooling: Pooling = "mean"
    # On CPU, attention dropout forces PyTorch's math attention path: training steps ~1.3-4x slower.
    attention_dropout: float | None = 0.0


class BertScratchParams(HFParams):
    from_scratch: bool | None = True
    pooling: Pooling = "cls"
