"""Word-level explanations: how much each word of a review pushed the verdict towards one class.

The class explained (the *target*) is the predicted one unless another is asked for; a sentiment model
is explained towards positive, as it always was (towards negative is the same explanation with every
sign flipped, as for any two classes). One method per model kind, each as faithful as that kind allows:

- linear models (``tfidf-lr``, ``nbsvm``): exact. The target's decision function is ``w . x + b`` (its
  row of a multinomial model, the one row of a binary one); each n-gram feature contributes
  ``w_j * x_j``, shared equally among the words of its occurrences, so the word scores sum to the
  decision function minus the intercept.
- ``attention-lstm``: its own attention weights (which words the pooled state is made of; unsigned,
  the same whichever class is explained).
- other PyTorch models: integrated gradients (Captum's ``LayerIntegratedGradients``) on the token
  embedding layer against an all-padding baseline, of the logit margin (positive minus negative) for
  two classes and of the target's logit minus the mean logit for more; fastText, whose bag of
  embeddings has no per-token layer, gets occlusion (each word removed through the attention mask, all
  in one batch: the drop in the margin, or for more classes in the target's probability), which for a
  bag model is cheap and exact about removal.

Scores are per token of the model, then summed into the words (whitespace-separated pieces) of the
text the user sent, with character offsets into it: cleaning (HTML, entities) is replayed with
offsets tracked, and each encoder says where its tokens came from (``TextEncoder.token_spans``).

:meth:`Explainer.units` is the same computation as a generator of small units of work (a window's
forward pass, an occlusion batch, ``IG_STEPS_PER_UNIT`` steps of integrated gradients): the server
runs other requests' batches between them (serving/batcher.py).
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import nn

from imdb_sentiment.config import CleaningConfig
from imdb_sentiment.data.cleaning import clean_text, clean_text_with_spans
from imdb_sentiment.data.labels import LabelSpace, clip
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import SentimentModel

Method = Literal["linear", "attention", "integrated-gradients", "occlusion"]
Span = tuple[int, int]
T = TypeVar("T")
Units = Generator[None, None, T]  # yields between units of work, returns the result
IG_STEPS = 16  # Gauss-Legendre (Captum's default): 16 points keep the completeness gap small (tested)
IG_STEPS_PER_UNIT = 2  # a 400-token CNN: ~25 ms per unit on one core, 16 steps at once took ~200 ms
OCCLUSION_BATCH = 64


@dataclass(frozen=True)
class WordScore:
    text: str
    start: int  # character offsets into the text as sent: text[start:end] == self.text
    end: int
    score: float


@dataclass(frozen=True)
class Explanation:
    method: Method
    words: list[WordScore]
    signed: bool  # False for attention weights: how much a word mattered, not in which direction
    target: str  # the class explained: a score > 0 pushed towards it


def target_index(classes: LabelSpace, name: str | None) -> int | None:
    """The index of the class named ``name`` (None: None, the default target); an unknown name is one line."""
    if name is None:
        return None
    if name not in classes.names:
        known = ", ".join(clip(known, 20) for known in classes.names[:12]) + (" ..." if classes.size > 12 else "")
        raise UserError(f"target: {clip(name)!r} is not a class of this model; its classes: {known}.")
    return classes.names.index(name)


class Explainer:
    """Explains one model's predictions; pick the method with :func:`explainer_for`."""

    method: Method
    signed = True

    def __init__(self, model: SentimentModel, cleaning: CleaningConfig) -> None:
        self.model, self.cleaning = model, cleaning

    def token_scores(self, cleaned: str, target: int) -> tuple[list[Span | None], np.ndarray]:
        """Spans (in the cleaned text) and scores towards class ``target`` of the tokens the model reads."""
        raise NotImplementedError

    def token_score_units(self, cleaned: str, target: int) -> Units[tuple[list[Span | None], np.ndarray]]:
        """:meth:`token_scores` in units of bounded work (default: one unit); override for a slow method."""
        return (yield from at_once(self.token_scores, cleaned, target))

    def explain(self, text: str, target: int | None = None) -> Explanation:
        """The words of ``text`` scored towards class ``target`` (an index of the model's classes; None:
        the predicted class, or positive for the sentiment task)."""
        return run_to_end(self.units(text, target))

    def units(self, text: str, target: int | None = None) -> Units[Explanation]:
        """:meth:`explain` as a generator yielding between units of work; no hook or grad mode stays set across one."""
        cleaned, origin = clean_text_with_spans(text, self.cleaning)
        if cleaned != clean_text(text, self.cleaning):  # cannot happen; never point at the wrong words
            raise AssertionError("offset-tracking cleaning disagrees with clean_text")
        classes = self.model.classes
        if target is None:
            target = (
                1 if classes.is_sentiment else int(self.model.predict_proba([cleaned], batch_size=1)[0].argmax())
            )
        yield  # cleaning a long text, scoring its tokens and summing them into words: ~20 ms each
        spans, scores = yield from self.token_score_units(cleaned, target)
        yield
        original = [
            (origin[span[0]][0], origin[span[1] - 1][1]) if span is not None and span[1] > span[0] else None
            for span in spans
        ]
        return Explanation(
            self.method,
            words_of(text, word_regions(text, cleaned, origin), original, scores),
            self.signed,
            classes.name_of(target),
        )


def at_once(function: Callable[..., T], *args: object) -> Units[T]:
    """``function(*args)`` as one unit of work: a generator that never yields."""
    return function(*args)
    yield  # unreachable: makes this function a generator


def run_to_end(units: Units[T]) -> T:
    """What a generator of units returns, all its units run now."""
    while True:
        try:
            next(units)
        except StopIteration as finished:
            return finished.value


def word_regions(text: str, cleaned: str, origin: list[Span]) -> list[Span]:
    """The words of ``text``: runs of characters that reach the model as non-space characters. Split at
    white space and at whatever cleaning turned into a space (``<br />``, tags), so "end.<br />The"
    is two words; an entity (``&amp;``) stays inside its word."""
    is_word = bytearray(len(text))
    for char, (start, end) in zip(cleaned, origin, strict=True):
        if not char.isspace():
            is_word[start:end] = b"\x01" * (end - start)
    return [match.span() for match in re.finditer(b"\x01+", bytes(is_word))]


def words_of(text: str, words: list[Span], spans: list[Span | None], scores: np.ndarray) -> list[WordScore]:
    """Sum token scores into the word (of ``words``) that holds each token's first character."""
    starts = [start for start, _ in words]
    totals: dict[int, float] = defaultdict(float)
    for span, score in zip(spans, scores, strict=True):
        if span is None:
            continue
        index = bisect.bisect_right(starts, span[0]) - 1
        if index >= 0 and span[0] < words[index][1]:
            totals[index] += float(score)
    return [
        WordScore(text[words[i][0] : words[i][1]], words[i][0], words[i][1], totals[i]) for i in sorted(totals)
    ]


# ------------------------------------------------------------------------------------ linear models
class LinearExplainer(Explainer):
    method: Method = "linear"

    def token_scores(self, cleaned: str, target: int) -> tuple[list[Span | None], np.ndarray]:
        from imdb_sentiment.text.spans import regex_tokens_with_spans

        pipeline = self.model.pipeline_  # type: ignore[attr-defined]
        vectorizer = pipeline.steps[0][1]
        features = pipeline[:-1].transform([cleaned]).tocsr()
        weights, _ = self.class_weights(target)
        contributions = dict(
            zip(features.indices.tolist(), (features.data * weights[features.indices]).tolist(), strict=True)
        )
        # The vectorizer's analyzer: lower-case (its preprocessor), its token pattern, word n-grams.
        tokens, spans = regex_tokens_with_spans(
            re.compile(vectorizer.token_pattern), cleaned, vectorizer.lowercase
        )
        low, high = vectorizer.ngram_range
        vocabulary = vectorizer.vocabulary_
        occurrences: dict[int, list[tuple[int, int]]] = defaultdict(list)  # column -> (first token, n) each
        for n in range(low, high + 1):
            for first in range(len(tokens) - n + 1):
                column = vocabulary.get(" ".join(tokens[first : first + n]))
                if column is not None and column in contributions:
                    occurrences[column].append((first, n))
        scores = np.zeros(len(tokens))
        for column, found in occurrences.items():
            for first, n in found:
                scores[first : first + n] += contributions[column] / (len(found) * n)
        return list(spans), scores

    def class_weights(self, target: int) -> tuple[np.ndarray, float]:
        """The weights and intercept of class ``target``'s decision function: a multinomial model's row
        of that class; a binary model's one row (class 1), negated for class 0."""
        classifier = self.model.pipeline_.steps[-1][1]  # type: ignore[attr-defined]
        coef, intercept = np.asarray(classifier.coef_), np.asarray(classifier.intercept_)
        if coef.shape[0] == 1:
            sign = 1.0 if target == 1 else -1.0
            return sign * coef[0], sign * float(intercept[0])
        return coef[target], float(intercept[target])

    def decision_without_intercept(self, text: str, target: int = 1) -> float:
        """``w . x`` of the cleaned text for class ``target``: what the word scores of :meth:`explain`
        add up to."""
        pipeline = self.model.pipeline_  # type: ignore[attr-defined]
        cleaned = clean_text(text, self.cleaning)
        decision = np.asarray(pipeline.decision_function([cleaned]))[0]
        _, intercept = self.class_weights(target)
        if decision.ndim == 0:  # binary: the score of class 1
            return float((decision if target == 1 else -decision) - intercept)
        return float(decision[target] - intercept)


# ----------------------------------------------------------------------------------- PyTorch models
class TorchExplainer(Explainer):
    """Shared by the PyTorch methods: the network inputs of one cleaned text and where their tokens came
    from. A chunked model (``chunk: true``) reads a long review as overlapping windows and averages their
    logits, so each window is explained on its own and the scores averaged: exact for the average."""

    def window_score_units(
        self, batch: dict[str, torch.Tensor], reads_text: torch.Tensor, target: int
    ) -> Units[np.ndarray]:
        """One score per input token of a one-row batch, towards class ``target``; ``reads_text`` is
        False at special tokens."""
        raise NotImplementedError

    def inputs(
        self, cleaned: str
    ) -> tuple[list[Span | None], list[tuple[dict[str, torch.Tensor], list[int | None]]]]:
        """The spans of the tokens read, and the one-row batches that read them (one, or one per
        window), each with the index into the spans of every input token (None: a special token)."""
        encoder, network = self.model.encoder, self.model.network  # type: ignore[attr-defined]
        network.eval()
        ids, spans = encoder.encode([cleaned])[0], encoder.token_spans([cleaned])[0]
        if not getattr(encoder, "chunk", False):
            return spans, [(_one_row(ids), list(range(len(ids))))]
        windows = []
        for start in encoder.window_starts(len(ids)):
            body = list(range(start, min(start + encoder.body_length, len(ids))))
            frame: list[int | None] = [None] * len(encoder.prefix)
            window_ids = encoder.prefix + [ids[i] for i in body] + encoder.suffix
            windows.append((_one_row(window_ids), frame + body + [None] * len(encoder.suffix)))
        return spans, windows

    def token_scores(self, cleaned: str, target: int) -> tuple[list[Span | None], np.ndarray]:
        return run_to_end(self.token_score_units(cleaned, target))

    def token_score_units(self, cleaned: str, target: int) -> Units[tuple[list[Span | None], np.ndarray]]:
        spans, windows = self.inputs(cleaned)
        scores = np.zeros(len(spans))
        for batch, positions in windows:
            reads_text = torch.tensor([p is not None and spans[p] is not None for p in positions])
            window = yield from self.window_score_units(batch, reads_text, target)
            for position, score in zip(positions, window, strict=True):
                if position is not None:
                    scores[position] += score / len(windows)
        return spans, scores


def _one_row(ids: list[int]) -> dict[str, torch.Tensor]:
    input_ids = torch.tensor([ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def class_score(
    network: nn.Module, batch: dict[str, torch.Tensor], target: int, probability: bool = False
) -> torch.Tensor:
    """Per row, the score explained for class ``target``. Two classes: the logit margin towards it (as
    binary models have always been explained). More: its probability (``probability``), or its logit
    minus the mean logit: softmax ignores a shift shared by all logits, so a raw logit means nothing
    on its own."""
    logits = network(batch).logits.float()
    if logits.shape[1] == 2:
        margin = logits[:, 1] - logits[:, 0]
        return margin if target == 1 else -margin
    if probability:
        return torch.softmax(logits, dim=1)[:, target]
    return logits[:, target] - logits.mean(dim=1)


class AttentionExplainer(TorchExplainer):
    method: Method = "attention"
    signed = False

    def window_score_units(
        self, batch: dict[str, torch.Tensor], reads_text: torch.Tensor, target: int
    ) -> Units[np.ndarray]:
        return (yield from at_once(self.attention, batch))

    def attention(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        with torch.no_grad():  # the weights the pooled state is made of, whichever class is explained
            return self.model.network(batch).attention[0].double().numpy()  # type: ignore[attr-defined]


class IntegratedGradientsExplainer(TorchExplainer):
    method: Method = "integrated-gradients"

    def __init__(
        self, model: SentimentModel, cleaning: CleaningConfig, layer: nn.Module, baseline_id: int
    ) -> None:
        super().__init__(model, cleaning)
        self.layer, self.baseline_id = layer, baseline_id

    def window_score_units(
        self, batch: dict[str, torch.Tensor], reads_text: torch.Tensor, target: int
    ) -> Units[np.ndarray]:
        """Layer integrated gradients, as Captum's ``LayerIntegratedGradients`` computes them (its
        results are matched in the tests), a few steps per unit: Captum runs all its steps in one call
        that cannot be paused, and its hooks must not stay on the layer while other requests run."""
        from captum.attr._utils.approximation_methods import approximation_parameters

        network = self.model.network  # type: ignore[attr-defined]
        # Baseline: padding in place of every token that stands for text; special tokens stay.
        baseline = {**batch, "input_ids": torch.where(reads_text, self.baseline_id, batch["input_ids"])}
        embedded, embedded_baseline = self.layer_output(batch), self.layer_output(baseline)
        step_sizes_of, alphas_of = approximation_parameters("gausslegendre")
        step_sizes, alphas = step_sizes_of(IG_STEPS), alphas_of(IG_STEPS)
        gradients = torch.zeros_like(embedded)  # sum over steps of step size x gradient at the step
        for first in range(0, IG_STEPS, IG_STEPS_PER_UNIT):
            yield
            chunk = range(first, min(first + IG_STEPS_PER_UNIT, IG_STEPS))
            path = torch.cat([embedded_baseline + alphas[i] * (embedded - embedded_baseline) for i in chunk])
            path.requires_grad_()
            rows = {key: value.expand(len(chunk), -1) for key, value in batch.items()}
            hook = self.layer.register_forward_hook(lambda module, inputs, output, path=path: path)
            try:
                with torch.enable_grad():
                    (grads,) = torch.autograd.grad(torch.unbind(class_score(network, rows, target)), path)
            finally:
                hook.remove()
            sizes = torch.tensor([step_sizes[i] for i in chunk], dtype=grads.dtype)
            gradients += (grads * sizes.view(-1, *[1] * (grads.dim() - 1))).sum(dim=0, keepdim=True)
        attributions = gradients * (embedded - embedded_baseline)
        return attributions.sum(dim=-1)[0].detach().double().numpy()

    def layer_output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the embedding layer gives for ``batch`` inside the network."""
        seen: list[torch.Tensor] = []
        hook = self.layer.register_forward_hook(lambda module, inputs, output: seen.append(output))
        try:
            with torch.no_grad():
                self.model.network(batch)  # type: ignore[attr-defined]
        finally:
            hook.remove()
        return seen[0].detach()


class OcclusionExplainer(TorchExplainer):
    method: Method = "occlusion"

    def window_score_units(
        self, batch: dict[str, torch.Tensor], reads_text: torch.Tensor, target: int
    ) -> Units[np.ndarray]:
        network = self.model.network  # type: ignore[attr-defined]
        length = batch["input_ids"].shape[1]
        scores = np.zeros(length)
        with torch.no_grad():
            full = class_score(network, batch, target, probability=True)[0].item()
        for first in range(0, length, OCCLUSION_BATCH):  # one unit per batch of occluded copies
            yield
            rows = torch.arange(first, min(first + OCCLUSION_BATCH, length))
            occluded = {key: value.repeat(len(rows), 1) for key, value in batch.items()}
            occluded["attention_mask"][torch.arange(len(rows)), rows] = 0
            with torch.no_grad():
                scores[rows.numpy()] = full - class_score(network, occluded, target, probability=True).numpy()
        return scores


def _integrated_gradients(model: SentimentModel, cleaning: CleaningConfig) -> Explainer:
    layer, baseline_id = model.input_embeddings()  # type: ignore[attr-defined]
    return IntegratedGradientsExplainer(model, cleaning, layer, baseline_id)


# ``Capabilities.explanation`` -> the explainer that implements it: a new method is one class + one entry.
EXPLAINERS: dict[str, Callable[[SentimentModel, CleaningConfig], Explainer]] = {
    "linear": LinearExplainer,
    "attention": AttentionExplainer,
    "integrated-gradients": _integrated_gradients,
    "occlusion": OcclusionExplainer,
}


def explainer_for(model: SentimentModel, cleaning: CleaningConfig) -> Explainer | None:
    """The explainer its capabilities name (``Capabilities.explanation``), or None when it has none
    (e.g. a remote LLM, an ensemble)."""
    if not isinstance(model, SentimentModel):  # a serving backend (an ONNX graph): no network to explain
        return None
    make = EXPLAINERS.get(model.capabilities.explanation or "")
    return make(model, cleaning) if make is not None else None
