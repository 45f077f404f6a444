"""Prompt -> token ids for the label-word scorers (llm-score, llm-sft): the fixed prompt around the
review, tokenised so the ids are those the tokenizer gives the whole prompt, and the label words' ids
as the continuation the tokenizer really produces after the answer prefix.

Why the care at the ``{text}`` slot: the prompt is tokenised apart from the review (its prefix is
cached once; reviews are truncated by tokens). A byte-level BPE tokenizer (GPT-2, SmolLM2) glues a
space to the word after it, so ``"Review: " + "I gave"`` tokenised in two pieces gives
``['Review', ':', 'Ġ', 'I', 'Ġgave']`` where the whole text gives ``['Review', ':', 'ĠI', 'Ġgave']``:
a lone ``Ġ`` the model never saw before a word, which moved margins by up to 0.30. The whitespace that
ends the prompt before the slot therefore travels with the review.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Self

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.llm.prompting import (
    LabelWords,
    PromptParams,
    Template,
    answer_text,
    chat_messages,
    fill,
)
from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.text.truncation import Truncation, truncate

SENTINEL = "\u2063REVIEW\u2063"  # stands for the review while the chat template renders the prompt
DEFAULT_ANSWER_PREFIX = "The sentiment is"  # the sentiment task's
LABELS_ANSWER_PREFIX = "The answer is"  # any other task's: its template asks which label fits


def strip_answer_prefix(prefix: str | None) -> str | None:
    return None if prefix is None else prefix.strip()  # the space before the label word is the word's token


AnswerPrefix = Annotated[str | None, AfterValidator(strip_answer_prefix)]


class PromptCandidate(BaseModel):
    """One prompt the template search may choose; an unset field takes the task's default."""

    model_config = ConfigDict(extra="forbid")
    template: Template = None
    label_words: LabelWords = None
    answer_prefix: AnswerPrefix = None


class LMPromptParams(PromptParams):
    """Prompt settings of the scorers that read a local LM's logits."""

    chat: bool = Field(True, description="Wrap the prompt in the tokenizer's chat template when it has one.")
    answer_prefix: AnswerPrefix = Field(
        None,
        description="Words that begin the answer (inside the assistant turn); the label word is scored as "
        "their continuation. Empty: the label word is the answer's first token. Default: "
        f"{DEFAULT_ANSWER_PREFIX!r} for the sentiment task, else {LABELS_ANSWER_PREFIX!r}.",
    )
    shot_max_tokens: int = Field(96, ge=8, le=4096, description="Tokens kept of each example review.")
    max_length: int = Field(384, ge=8, le=32768, description="Tokens kept of the review (not the prompt).")
    truncation: Truncation = "head+tail"
    template_search: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Training reviews (balanced, seeded, never validation or test) on which to choose the "
        "prompt: the configured one or one of template_candidates, by ROC-AUC for two classes, else the mean "
        "per-class log-likelihood after calibration. 0: no search, the configured prompt.",
    )
    template_candidates: list[PromptCandidate] | None = Field(
        None,
        min_length=1,
        description="Prompts the search tries after the configured one (unset fields: the task's defaults). "
        "Default: a few built in (sentiment's, else built from the label words).",
    )

    @field_validator("template_search")
    @classmethod
    def _enough_reviews(cls, value: int) -> int:
        if value == 1:
            raise ValueError("give 0 (no search) or at least one training review per class")
        return value

    @field_validator("template_candidates")
    @classmethod
    def _only_with_a_search(cls, value: list[PromptCandidate] | None, info: ValidationInfo) -> Any:
        if value is not None and not info.data.get("template_search"):
            raise ValueError("set template_search to the number of training reviews to choose the prompt on")
        return value

    def for_task(self, classes: LabelSpace) -> Self:
        resolved = super().for_task(classes)
        if resolved.answer_prefix is None:
            prefix = DEFAULT_ANSWER_PREFIX if classes.is_sentiment else LABELS_ANSWER_PREFIX
            resolved = resolved.model_copy(update={"answer_prefix": prefix})
        return resolved


class PromptEncoder(TextEncoder):
    """Review -> prompt token ids (fixed prefix + head+tail-truncated review + fixed suffix); batches
    are left-padded so every row ends at the position whose next-token logits are read. ``params``: with
    the task's defaults filled in (:meth:`LMPromptParams.for_task`)."""

    def __init__(
        self, tokenizer: Any, params: LMPromptParams, shots: list[tuple[str, int]], include_prefix: bool = True
    ) -> None:
        self.tokenizer = tokenizer
        self.include_prefix = include_prefix  # False: the network holds the prefix (its cached keys / values)
        self.max_length = params.max_length
        self.truncation = params.truncation
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._backend = copy.deepcopy(tokenizer.backend_tokenizer)
        self._backend.no_truncation()
        self._backend.no_padding()
        self.lead = ""  # the prompt's whitespace before the slot, tokenised with the review
        cut_shots = [(self.decode(self.review_ids([text])[0][: params.shot_max_tokens]).strip(), label)
                     for text, label in shots]  # fmt: skip
        use_chat = bool(params.chat and getattr(tokenizer, "chat_template", None))
        before, after = render_prompt(tokenizer, params, cut_shots, use_chat).split(SENTINEL)
        self.lead = before[len(before.rstrip()) :]
        before = before[: len(before) - len(self.lead)]
        trail = after[len(after.rstrip(" ")) :]  # a space that ends the prompt belongs to the label word's token
        after = after[: len(after) - len(trail)]
        # A chat template writes its special tokens as text; a plain prompt gets the tokenizer's BOS.
        self.prefix = tokenizer(before, add_special_tokens=not use_chat)["input_ids"]
        self.suffix = tokenizer(after, add_special_tokens=False)["input_ids"]
        if self.prefix and self.prefix[-1] == tokenizer.eos_token_id and not use_chat:
            self.prefix = self.prefix[:-1]
        self.label_ids = [
            self.continuation_token(
                after, trail + answer_text(params.answer_prefix, word)[len(params.answer_prefix) :]
            )
            for word in params.label_words
        ]
        first_word = {}  # each label word's token -> the first word scored by it
        for word, token in zip(params.label_words, self.label_ids, strict=True):
            if token in first_word:
                raise UserError(
                    f"model.params.label_words: {first_word[token]!r} and {word!r} start with the same token; the "
                    "scorer reads the first token of each, so pick words that differ there."
                )
            first_word[token] = word

    def continuation_token(self, context: str, continuation: str) -> int:
        """The first token the tokenizer gives ``continuation`` written right after ``context`` (e.g.
        ``' positive'`` after "The sentiment is" is ``Ġpositive``, not the bare ``positive``)."""
        alone = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        joined = self.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        if len(joined) <= len(alone) or joined[: len(alone)] != alone:
            raise UserError(
                f"model.params.label_words: {continuation.strip()!r} has no token of its own after the prompt's "
                "end (it merges with the answer prefix); change the word or model.params.answer_prefix."
            )
        return int(joined[len(alone)])

    def review_ids(self, texts: list[str]) -> list[list[int]]:
        texts = [self.lead + text.strip() for text in texts]
        return [encoding.ids for encoding in self._backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode(self, texts: list[str]) -> list[list[int]]:
        prefix = self.prefix if self.include_prefix else []
        return [prefix + truncate(ids, self.max_length, self.truncation) + self.suffix
                for ids in self.review_ids(texts)]  # fmt: skip

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(example["input_ids"]) for example in examples)
        input_ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            ids = example["input_ids"]
            input_ids[row, width - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "position_ids": (attention_mask.cumsum(1) - 1).clamp(min=0)}  # fmt: skip
        if "label" in examples[0]:
            batch["labels"] = torch.as_tensor([example["label"] for example in examples], dtype=torch.long)
        return batch

    def save(self, directory: Path) -> None:  # rebuilt from the params, the base and llm_prompt.json
        pass


def render_prompt(tokenizer: Any, params: LMPromptParams, shots: list[tuple[str, int]], use_chat: bool) -> str:
    """The whole prompt as text, ``SENTINEL`` in the review's place, ending with the answer prefix
    (inside the assistant turn of a chat: the model continues its own answer)."""
    prefix = params.answer_prefix
    if not use_chat:  # plain completion: each example followed by its answer
        examples = "".join(
            fill(params.template, text) + "\n" + answer_text(prefix, params.label_words[label]) + "\n\n"
            for text, label in shots
        )
        return examples + fill(params.template, SENTINEL) + "\n" + prefix
    messages = chat_messages(params.template, params.label_words, shots, SENTINEL, prefix)
    if not prefix:  # an empty assistant turn: the label word is its first token
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    messages.append({"role": "assistant", "content": prefix})
    return tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
