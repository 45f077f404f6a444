"""``llm-score``: any causal LM as a classifier by the log-probabilities of its label words.

The review goes into an instruction template (zero- or k-shot, as a chat when the tokenizer has a chat
template) whose assistant turn is already begun ("The sentiment is": the model continues its own
answer, as it learned to; a label word as the first token of an empty assistant turn ranked reviews at
ROC-AUC 0.68). One forward pass gives the next-token logits after the prompt, and the margin
``logit(" positive") - logit(" negative")`` (= log P(pos) - log P(neg): the softmax normaliser cancels;
each word's token is the one the tokenizer really produces after the prefix, see :mod:`.encoding`)
is the raw score. Every answer is valid by construction. Batches are left-padded with explicit
``position_ids`` so padding never moves a review's positions (predictions do not depend on batching),
and only the last position's logits are computed (``logits_to_keep=1``: the vocabulary projection is
the largest matrix of a small LM).

Small instruction models carry a strong label prior (SmolLM2-135M says "positive" to almost anything),
so ``fit`` calibrates without touching the test split and trains nothing: a content-free input
(Zhao et al. 2021, "Calibrate Before Use") and a threshold fitted on balanced training reviews. Both
biases are kept, with a third that needs no labels (``prior``: the threshold that matches the class
shares on reviews drawn blind to their labels); ``calibration`` picks the one predictions use, and the
test metrics report the raw, content-free, training-threshold and prior accuracies side by side.

K > 2 classes (one label word each): the probabilities are the softmax of the K label-word logits
minus a per-class bias: content-free, the log of the mean content-free distribution (Zhao et al.'s
diagonal calibration); train, the intercepts that maximise the likelihood of balanced training reviews
(:func:`.calibration.fit_intercepts`). Two classes keep the margin, its sigmoid and the accuracy threshold above.

``template_search: N`` chooses the prompt (template, label words, answer prefix) before calibrating:
the configured one or a candidate, rated on N training reviews (:mod:`.search`), recorded in the run.

Why not ``transformers`` pipelines: zero-shot-classification is NLI-based and text-generation decodes;
neither gives the label-word logits of one forward pass.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from scipy.special import softmax
from torch import nn

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, ModelParams
from imdb_sentiment.models.llm.calibration import fitted_biases, margins_of, prompt_quality
from imdb_sentiment.models.llm.encoding import LMPromptParams, PromptEncoder
from imdb_sentiment.models.llm.loading import cache_argument, load_causal_lm, load_tokenizer, model_source
from imdb_sentiment.models.llm.prompting import (
    calibration_rows,
    check_label_words_fit_the_data,
    choose_shots,
)
from imdb_sentiment.models.llm.search import (
    candidate_prompts,
    candidate_record,
    check_search_fits_classes,
    check_search_fits_the_data,
    chosen_index,
)
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest, TorchTextClassifier
from imdb_sentiment.training.batching import EncodedDataset
from imdb_sentiment.training.inference import dataset_logits
from imdb_sentiment.training.outputs import NetworkOutput
from imdb_sentiment.training.runtime import Runtime

PROMPT_FILE = "llm_prompt.json"
logger = logging.getLogger("imdb_sentiment.models.llm")
Calibration = Literal["none", "content-free", "train", "prior"]


class LLMScoreParams(LMPromptParams):
    checkpoint: str = Field(
        "smollm2",
        description="Causal LM: hub id, local folder, or a fetched model name (smollm2: run "
        "imdb-sentiment llm fetch smollm2 first).",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside the checkpoint folder (needs `gguf`).")
    calibration: Calibration = Field(
        "train",
        description="Bias that predictions subtract from the label margin: none, content-free (Zhao et al. "
        "2021), train (threshold fitted on calibration_size balanced training reviews) or prior (no review's "
        "label: the threshold that matches the training split's class shares on calibration_size reviews drawn "
        "without looking at their labels; with shots, only the shots are chosen by label).",
    )
    calibration_size: int = Field(200, ge=2, le=100_000, description="Training reviews the calibration reads.")
    content_free_inputs: list[str] = Field(["N/A", "", "[MASK]"], min_length=1)
    dtype: Literal["float32", "bfloat16"] = "float32"


class LabelWordNetwork(nn.Module):
    """Causal LM -> the next-token logits of the label words after the prompt: the K-class logits.

    With ``prompt_prefix`` (a frozen LM), batches carry only review + suffix: the prompt's shared
    beginning (instruction, k-shot examples) runs once and its key / value cache is reused by every
    batch. A 4-shot prompt is ~500 tokens before the review; without the cache each review would pay
    for them again.
    """

    def __init__(self, lm: nn.Module, label_ids: list[int], prompt_prefix: list[int] | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.cache_argument = cache_argument(lm)  # once: forward runs per batch
        self.register_buffer("label_ids", torch.as_tensor(label_ids, dtype=torch.long), persistent=False)
        self.prompt_prefix = prompt_prefix
        self._prefix_cache: tuple[torch.device, Any] | None = None

    def prefix_cache(self, device: torch.device) -> Any:
        if self._prefix_cache is None or self._prefix_cache[0] != device:
            assert self.prompt_prefix
            with torch.no_grad():
                ids = torch.as_tensor([self.prompt_prefix], dtype=torch.long, device=device)
                output = self.lm(input_ids=ids, use_cache=True, logits_to_keep=1)
            self._prefix_cache = (device, getattr(output, self.cache_argument))
        return self._prefix_cache[1]

    def forward(self, batch: dict[str, torch.Tensor]) -> NetworkOutput:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "position_ids": batch["position_ids"], "use_cache": False}  # fmt: skip
        if self.prompt_prefix:
            rows, start = batch["input_ids"].shape[0], len(self.prompt_prefix)
            cache = copy.deepcopy(self.prefix_cache(batch["input_ids"].device))
            cache.batch_repeat_interleave(rows)
            seen = torch.ones(
                (rows, start), dtype=batch["attention_mask"].dtype, device=batch["attention_mask"].device
            )
            inputs.update(attention_mask=torch.cat([seen, batch["attention_mask"]], dim=1),
                          position_ids=batch["position_ids"] + start, use_cache=True, **{self.cache_argument: cache})  # fmt: skip
        output = self.lm(**inputs, logits_to_keep=1)
        logits = output.logits[:, -1, :].index_select(-1, self.label_ids).float()
        return NetworkOutput(logits=logits, features=logits)


# -------------------------------------------------------------------------------------------- model
@register_model("llm-score")
class LLMScorer(TorchTextClassifier):
    """Zero- / k-shot classification by label-word log-probabilities; fit() only calibrates."""

    Params: ClassVar[type[ModelParams]] = LLMScoreParams
    params: LLMScoreParams
    caches_prompt: ClassVar[bool] = True  # the LM is frozen: the prompt prefix's keys / values never change
    description = "Any causal LM (hub id, folder, fetched GGUF) scored by label-word log-probs; calibrated."
    # Runs on training.device (checked before a run folder exists) but trains nothing: no loop, no resume.
    capabilities = replace(
        TorchTextClassifier.capabilities, kind="pytorch (frozen LM, calibrated)", trains_with_loop=False,
        supports_resume=False, exportable_to_onnx=False,
    )  # fmt: skip

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self._prompt: tuple[LabelSpace, LLMScoreParams] | None = None  # see prompt
        self.shots: list[tuple[str, int]] = []
        # Two classes: a bias on the margin; K: one per class on the label-word logits.
        self.biases: dict[str, float | list[float]] = {"none": 0.0}
        self.encoder: PromptEncoder | None = None
        self._last_margins: tuple[int, np.ndarray] | None = None
        self.calibration_reviews = 0
        self.reviews_read: set[int] = set()  # training rows scored by fit (calibration, template search)

    @property
    def prompt(self) -> LLMScoreParams:
        """The params with the task's defaults (label words, template) for the model's classes."""
        if self._prompt is None or self._prompt[0] != self.classes:
            self._prompt = (self.classes, self.params.for_task(self.classes))
        return self._prompt[1]

    @classmethod
    def check_runnable(cls, config, params: ModelParams) -> None:
        assert isinstance(params, LLMScoreParams)
        check_label_words_fit_the_data(config, params)
        check_search_fits_the_data(config, params)
        model_source(params)

    # ------------------------------------------------------------------------------ encoder/network
    def build_encoder(self, train: TextDataset, context: FitContext) -> PromptEncoder:
        self.learn_classes(train)
        prompt = self.prompt  # label words given for another number of classes are refused here, first
        try:
            self.shots = choose_shots(train, self.params.shots, context.seed)
        except ValueError as exc:
            raise UserError(f"model.params.shots: {exc}") from None
        tokenizer = load_tokenizer(self.params)
        if self.params.template_search:
            prompt = self.search_prompt(train, context, tokenizer)
        return PromptEncoder(tokenizer, prompt, self.shots, not self.caches_prompt)

    def load_encoder(self, directory: Path) -> PromptEncoder:
        saved = json.loads((Path(directory) / PROMPT_FILE).read_text())
        self.shots = [(text, int(label)) for text, label in saved["shots"]]
        self.biases = {key: [float(v) for v in value] if isinstance(value, list) else float(value)
                       for key, value in saved["biases"].items()}  # fmt: skip
        return PromptEncoder(load_tokenizer(self.params), self.prompt, self.shots, not self.caches_prompt)

    def build_network(self, request: NetworkRequest) -> LabelWordNetwork:
        assert self.encoder is not None
        prefix = self.encoder.prefix if self.caches_prompt else None
        return LabelWordNetwork(load_causal_lm(self.params, private=False), self.encoder.label_ids, prefix)

    # ---------------------------------------------------------------------------------- calibration
    def check_classes(self, classes: LabelSpace) -> None:
        self.params.for_task(classes)  # label words and template for these classes, or one line
        check_search_fits_classes(self.params, classes)

    def training_rows(self, train: TextDataset, size: int, seed: int, blind: bool = False) -> np.ndarray:
        """``size`` seeded training rows that are not among the shots (fewer if the split is short):
        balanced, or with ``blind`` drawn without reading their labels (:func:`.prompting.calibration_rows`)."""
        shots = set(self.shots)
        shot_rows = [i for i, text in enumerate(train.texts) if (text, int(train.labels[i])) in shots]
        rows = calibration_rows(np.asarray(train.labels), size, seed, np.asarray(shot_rows, dtype=int),
                                self.num_classes, blind)  # fmt: skip
        self.reviews_read.update(int(row) for row in rows)
        return rows

    def search_prompt(self, train: TextDataset, context: FitContext, tokenizer: Any) -> LLMScoreParams:
        """The best of the candidate prompts on training reviews (:mod:`.search`); it becomes the params'
        prompt, so the saved model predicts with it. Every candidate's rating goes to the run's metrics."""
        p = self.params
        rows = self.training_rows(train, p.template_search, context.seed + 2)
        texts, labels = [train.texts[i] for i in rows], np.asarray(train.labels)[rows]
        criterion = "roc_auc" if self.num_classes == 2 else "log_likelihood"
        lm = load_causal_lm(p, private=False)  # frozen: the candidates' prefixes are cached as in llm-score
        results: list[dict[str, Any]] = []
        prompts = candidate_prompts(p, self.classes)
        for prompt in prompts:
            try:
                encoder = PromptEncoder(tokenizer, prompt, self.shots, include_prefix=False)
            except UserError as exc:  # the tokenizer cannot tell its label words apart
                if not results:
                    raise  # the configured prompt: refused as without a search
                results.append({**candidate_record(prompt), "skipped": str(exc)})
                continue
            network = LabelWordNetwork(lm, encoder.label_ids, encoder.prefix).eval()

            def scores(batch: list[str], network=network, encoder=encoder) -> np.ndarray:
                return dataset_logits(network, encoder, EncodedDataset(encoder.encode(batch)),
                                      context.training.eval_batch_size, self.inference_runtime(),
                                      num_classes=self.num_classes)  # fmt: skip

            reviews = scores(texts)
            biases = fitted_biases(
                scores(p.content_free_inputs), reviews, labels, self.num_classes, np.ones(self.num_classes)
            )  # a balanced sample: its shares are equal
            quality = prompt_quality(reviews, labels, biases[p.calibration])
            results.append({**candidate_record(prompt), **quality})
            logger.info("template search: prompt %d of %d, %s %.4f", len(results), len(prompts), criterion,
                        quality[criterion])  # fmt: skip
        best = chosen_index(results, criterion)
        context.extra_metrics["template_search"] = {
            "reviews": len(rows), "criterion": criterion, "calibration": p.calibration, "chosen": best,
            "candidates": results,
        }  # fmt: skip
        chosen = prompts[best]
        self.params = p.model_copy(update=candidate_record(chosen))
        self._prompt = None
        return chosen

    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> LLMScorer:
        self.runtime = (context.runtime or Runtime.from_training(context.training)).apply()
        self.encoder = self.build_encoder(train, context)
        self.network = self.build_network(NetworkRequest()).eval()
        self.calibrate(train, context)
        return self

    def calibrate(self, train: TextDataset, context: FitContext) -> None:
        """Both biases, from anything but the test split: content-free inputs and training reviews
        that are not among the shots."""
        p = self.params
        # The prior calibration must not choose its reviews by their labels: a label-blind sample. Its bias
        # matches the shares the sample was drawn with: the training split's for a blind draw, equal ones
        # for a balanced draw (a calibration other than prior: then it is a median threshold).
        blind = p.calibration == "prior"
        rows = self.training_rows(train, p.calibration_size, context.seed + 1, blind=blind)
        content_free = self.label_scores(p.content_free_inputs, len(p.content_free_inputs))
        scores = self.label_scores([train.texts[i] for i in rows], context.training.eval_batch_size)
        shares = np.bincount(train.labels, minlength=self.num_classes) if blind else np.ones(self.num_classes)
        self.biases = fitted_biases(content_free, scores, np.asarray(train.labels)[rows], self.num_classes, shares)
        self.calibration_reviews = len(rows)
        context.extra_metrics.update(
            {"calibration": p.calibration, "calibration_reviews": len(rows), "shots": p.shots,
             **{f"bias_{name}": value for name, value in self.biases.items()}}
        )  # fmt: skip

    # ------------------------------------------------------------------------------------ inference
    def label_scores(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Raw label-word logits (n, K), one column per class."""
        assert self.encoder is not None and self.network is not None, "fit or load the model first"
        return dataset_logits(
            self.network,
            self.encoder,
            self.encode(texts),
            batch_size,
            self.inference_runtime(),
            show_progress=show_progress,
            num_classes=self.num_classes,
        )

    def margins(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Two classes: raw label margins log P(positive word) - log P(negative word), one per text."""
        return margins_of(self.label_scores(texts, batch_size, show_progress))

    def predict_proba(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if self.num_classes > 2:
            scores = self.label_scores(texts, batch_size, show_progress).astype(np.float64)
            self._last_margins = (id(texts), scores)
            return softmax(scores - np.asarray(self.biases.get(self.params.calibration, 0.0)), axis=1)
        margins = self.margins(texts, batch_size, show_progress)
        self._last_margins = (id(texts), margins)
        positive = 1.0 / (1.0 + np.exp(-(margins - self.biases.get(self.params.calibration, 0.0))))
        return np.stack([1.0 - positive, positive], axis=1)

    def prediction_metrics(
        self, texts: list[str], labels: np.ndarray, probabilities: np.ndarray
    ) -> dict[str, Any]:
        """Accuracy under each calibration (the scores are those predict_proba just computed)."""
        scores = self._last_margins[1] if self._last_margins and self._last_margins[0] == id(texts) else None
        if scores is None or len(scores) != len(texts):
            scores = self.margins(texts) if self.num_classes == 2 else self.label_scores(texts).astype(np.float64)
        labels = np.asarray(labels)

        def predicted(bias: float | list[float]) -> np.ndarray:
            if self.num_classes == 2:
                return (scores > bias).astype(int)
            return (scores - np.asarray(bias)).argmax(axis=1)

        return {
            "calibration": self.params.calibration,
            **{f"accuracy_{name.replace('-', '_')}": float((predicted(bias) == labels).mean())
               for name, bias in self.biases.items()},
        }  # fmt: skip

    def num_trainable_parameters(self) -> int:
        return 0  # the LM is frozen; fit() only measures biases

    def train_examples_used(self, available: int) -> int:
        """Training reviews the fit read: the shots, the calibration sample and the template search's
        reviews (two samples of the training split that may overlap), not the whole split."""
        return len(self.shots) + len(self.reviews_read)

    # ------------------------------------------------------------------------------------ save/load
    def save_weights(self, directory: Path) -> None:
        """The prompt (shots) and biases; the LM is named by ``checkpoint``, never copied."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PROMPT_FILE).write_text(json.dumps({"shots": self.shots, "biases": self.biases}, indent=2))

    def load_weights(self, directory: Path) -> None:
        self.encoder = self.load_encoder(directory)
        self.network = self.build_network(NetworkRequest(weights=Path(directory))).eval()
