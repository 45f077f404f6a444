"""``llm-sft``: the label-word scorer of :mod:`.scoring`, fine-tuned by the shared loop.

The K label-word logits after the prompt (one word per class) are the K-class logits, so the ordinary
cross-entropy of the loop is the language-modelling loss of the right label word restricted to the
verbalizer. With
``adapter`` (LoRA by default, through :mod:`imdb_sentiment.models.hf.adapters`) only the adapter
trains and a run saves only the adapter plus a pointer to the base; ``adapter: null`` fine-tunes every
weight and saves the whole LM. ``merged()`` folds LoRA into the base (``imdb-sentiment export --merge``).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from torch import nn

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, ModelParams
from imdb_sentiment.models.hf.adapters import (
    ADAPTER_METHODS,
    AdapterConfig,
    apply_adapter,
    merge_adapter,
    method_of,
    save_adapter,
)
from imdb_sentiment.models.hf.adapters.lora import LoraAdapter
from imdb_sentiment.models.hf.hub import quiet_transformers
from imdb_sentiment.models.llm.loading import load_causal_lm
from imdb_sentiment.models.llm.scoring import Calibration, LabelWordNetwork, LLMScoreParams, LLMScorer
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest, TorchTextClassifier

FULL_LM_DIR = "lm"  # a fully fine-tuned or merged LM, saved whole


class LLMSFTParams(LLMScoreParams):
    adapter: AdapterConfig | None = Field(
        default_factory=lambda: LoraAdapter(rank=8, alpha=16.0, dropout=0.05),
        description="LoRA (default: q/v projections, rank 8); null fine-tunes every weight.",
    )
    calibration: Calibration = Field("none", description="Trained on the label words: no bias needed.")


@register_model("llm-sft")
class LLMSFTClassifier(LLMScorer):
    """A causal LM fine-tuned (LoRA by default) to put its label words' logits right."""

    Params: ClassVar[type[ModelParams]] = LLMSFTParams
    params: LLMSFTParams
    caches_prompt: ClassVar[bool] = False  # the adapter changes the prefix's keys / values as it trains
    description = "A causal LM's label-word logits fine-tuned with LoRA on the shared loop."

    capabilities = replace(
        LLMScorer.capabilities, kind="pytorch (shared loop)", trains_with_loop=True, supports_resume=True
    )

    @classmethod
    def check_config(cls, config, params: ModelParams) -> None:
        super().check_config(config, params)
        assert isinstance(params, LLMSFTParams)
        if params.adapter is not None and not method_of(params.adapter).for_causal_lm:
            supported = ", ".join(name for name, method in sorted(ADAPTER_METHODS.items()) if method.for_causal_lm)
            raise UserError(
                f"model.params.adapter: llm-sft supports {supported} (or null), not {params.adapter.method}"
            )

    def build_network(self, request: NetworkRequest) -> LabelWordNetwork:
        assert self.encoder is not None
        weights = request.weights
        if weights is not None and (weights / FULL_LM_DIR).is_dir():
            from transformers import AutoModelForCausalLM

            with quiet_transformers():
                lm = AutoModelForCausalLM.from_pretrained(str(weights / FULL_LM_DIR))
        else:
            lm = load_causal_lm(self.params, private=True)
            if self.params.adapter is not None:
                lm = apply_adapter(lm, self.params.adapter, with_head=False, saved=weights)
        return LabelWordNetwork(lm, self.encoder.label_ids)

    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> LLMSFTClassifier:
        TorchTextClassifier.fit(self, train, valid, context)  # the shared loop
        self.calibrate(train, context)  # reported next to the trained scores; used if asked for
        return self

    def num_trainable_parameters(self) -> int:
        return TorchTextClassifier.num_trainable_parameters(self)  # the adapter (or every weight)

    def train_examples_used(self, available: int) -> int:
        return available  # the loop trains on the whole training split

    def save_weights(self, directory: Path) -> None:
        assert self.network is not None
        super().save_weights(directory)
        lm = self.network.lm
        if self.params.adapter is not None:
            save_adapter(
                lm, self.params.adapter, Path(directory), (self.params.checkpoint, "model.params.checkpoint")
            )
        else:
            with quiet_transformers():
                lm.save_pretrained(str(Path(directory) / FULL_LM_DIR))

    def merged(self) -> LLMSFTClassifier:
        """A copy with LoRA folded into the LM's weights: the same predictions, a plain model."""
        assert self.network is not None and self.params.adapter is not None, "a fitted or loaded LoRA run"
        merged = type(self)(self.params.model_copy(update={"adapter": None}))
        merged.encoder, merged.shots, merged.biases = self.encoder, self.shots, dict(self.biases)
        merged.classes = self.classes
        lm = plain_weights(merge_adapter(copy.deepcopy(self.network.lm), self.params.adapter))
        merged.network = LabelWordNetwork(lm, self.encoder.label_ids).eval()
        return merged


def plain_weights(lm: nn.Module) -> nn.Module:
    """The merged LM as an ordinary model that ``save_pretrained`` writes as safetensors.

    A GGUF base (the fetched SmolLM2) is dequantised into float tensors at load, yet transformers keeps
    its GGUF quantizer on the model and refuses to save it ("quantized with gguf and is not
    serializable"). Once the weights are plain tensors the quantizer describes nothing: drop it. Weights
    still packed in GGUF blocks (a GGUF matmul kernel was used) cannot take a merge: refuse."""
    packed = [name for name, module in lm.named_modules() if "gguf" in type(module).__module__.lower()]
    if packed:
        raise UserError(
            f"the base LM keeps {len(packed)} layers in GGUF blocks (e.g. {packed[0]}), which cannot take a "
            "merged adapter; serve the run as it is (adapter + base) instead of merging."
        )
    if getattr(lm, "hf_quantizer", None) is not None:
        lm.hf_quantizer = None
        lm.quantization_method = None
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
    return lm
