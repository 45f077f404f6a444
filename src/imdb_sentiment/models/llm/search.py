"""The template search: which prompt (template, label words, answer prefix) a label-word scorer uses,
chosen on training reviews only.

The configured prompt is candidate 0 and wins ties, so a search never trades it for an equal one; then
come ``template_candidates`` or the built-in ones below. Each is scored by the scorer's own path (the
prompt prefix's cached keys / values, batched) on ``template_search`` balanced, seeded training reviews
that are not among the shots; they may overlap the calibration sample, also drawn from the training
split. Rated by :func:`~.calibration.prompt_quality` after the model's calibration, whose biases each
candidate gets from the same reviews (and the content-free inputs): ROC-AUC for two classes (which no
bias changes), the mean per-class log-likelihood for more. Why a handful of fixed candidates and not a
generated or gradient-searched prompt: small instruction LMs are sensitive to the verbalizer and the
answer's opening words, and a few readable alternatives cover most of that at a few hundred forward
passes each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imdb_sentiment.config import ExperimentConfig
from imdb_sentiment.data.labels import LabelSpace, clip
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.llm.encoding import LMPromptParams, PromptCandidate
from imdb_sentiment.models.llm.prompting import check_label_word_count, known_classes, listing

SENTIMENT_CANDIDATES = (
    PromptCandidate(template="Review: {text}\n\nDid the reviewer like this movie? Answer yes or no.",
                    label_words=["no", "yes"], answer_prefix="The answer is"),
    PromptCandidate(template="{text}\n\nWas the movie great or terrible, according to this review?",
                    label_words=["terrible", "great"], answer_prefix="In short, the movie was"),
    PromptCandidate(template="Movie review: {text}\n\nIs this review positive or negative?",
                    label_words=["negative", "positive"], answer_prefix="This review is"),
)  # fmt: skip


def builtin_candidates(classes: LabelSpace, label_words: list[str]) -> list[PromptCandidate]:
    """Sentiment's alternatives, or for any other task two rewordings that list ``label_words``."""
    if classes.is_sentiment:
        return list(SENTIMENT_CANDIDATES)
    choices = listing(label_words)
    return [
        PromptCandidate(template=f"Review: {{text}}\n\nWhich label describes this review best: {choices}?",
                        label_words=label_words, answer_prefix="The label is"),
        PromptCandidate(template=f"{{text}}\n\nClassify the review above as {choices}.",
                        label_words=label_words, answer_prefix="This review is"),
    ]  # fmt: skip


def candidate_prompts(params: LMPromptParams, classes: LabelSpace) -> list[LMPromptParams]:
    """The configured prompt, then each candidate, with the task's defaults filled in; a candidate's
    label words for another number of classes: one line naming it."""
    configured = params.for_task(classes)
    assert configured.label_words is not None
    candidates = params.template_candidates or builtin_candidates(classes, configured.label_words)
    prompts = [configured]
    for index, candidate in enumerate(candidates):
        if candidate.label_words is not None:
            check_label_word_count(len(candidate.label_words), classes.size, class_names(classes),
                                   f"model.params.template_candidates.{index}.label_words")  # fmt: skip
        update = {"template": candidate.template, "label_words": candidate.label_words,
                  "answer_prefix": candidate.answer_prefix}  # fmt: skip
        prompts.append(params.model_copy(update=update).for_task(classes))
    return prompts


def class_names(classes: LabelSpace) -> str:
    return ", ".join(clip(name, 20) for name in classes.names[:12])


def check_search_fits_the_data(config: ExperimentConfig, params: LMPromptParams) -> None:
    """Before a run folder, where the data section tells the number of classes: each candidate's label
    words (a table's count is checked by :func:`check_search_fits_classes` once it is read)."""
    known = known_classes(config.data)
    if known is not None and params.template_search:
        for index, candidate in enumerate(params.template_candidates or []):
            if candidate.label_words is not None:
                check_label_word_count(len(candidate.label_words), *known,
                                       f"model.params.template_candidates.{index}.label_words")  # fmt: skip


def check_search_fits_classes(params: LMPromptParams, classes: LabelSpace) -> None:
    if params.template_search and params.template_search < classes.size:
        raise UserError(
            f"model.params.template_search: {params.template_search} reviews for {classes.size} classes; give at "
            "least one per class (a few dozen per class tell prompts apart)."
        )
    if params.template_search:
        candidate_prompts(params, classes)


def chosen_index(results: list[dict[str, Any]], criterion: str) -> int:
    """The best rated candidate; ties (and candidates that could not be scored) go to the earliest."""
    values = [result.get(criterion, -np.inf) for result in results]
    return int(np.argmax(values))


def candidate_record(prompt: LMPromptParams) -> dict[str, Any]:
    return {"template": prompt.template, "label_words": prompt.label_words, "answer_prefix": prompt.answer_prefix}
