"""What every LLM classifier here shares: the instruction template (with its ``{text}`` slot), the
verbalizer (one label word per class), balanced seeded k-shot examples from the training split, and
the chat messages they make."""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.models.base import ModelParams

TEXT_SLOT = "{text}"
DEFAULT_TEMPLATE = (
    "Is the sentiment of this movie review positive or negative?\n\nReview: {text}\n\n"
    "Answer with one word: positive or negative."
)
DEFAULT_LABEL_WORDS = ("negative", "positive")  # index = label


def check_template(template: str) -> str:
    """A template holds exactly one ``{text}`` slot (filled by plain replacement: other braces are text)."""
    count = template.count(TEXT_SLOT)
    if count != 1:
        raise ValueError(f"the template must contain the review slot {TEXT_SLOT} exactly once (found {count})")
    return template


def check_label_words(words: list[str]) -> list[str]:
    if len(words) != 2 or any(not word.strip() for word in words):
        raise ValueError("give two non-empty label words: [negative word, positive word]")
    if words[0].strip().lower() == words[1].strip().lower():
        raise ValueError("the two label words must differ")
    return words


class PromptParams(ModelParams):
    """The prompt settings every LLM classifier shares, validated in one place."""

    template: str = Field(
        DEFAULT_TEMPLATE, description="Instruction (user message) with one {text} slot for the review."
    )
    label_words: list[str] = Field(list(DEFAULT_LABEL_WORDS), description="[negative word, positive word].")
    shots: int = Field(0, ge=0, le=64, description="k-shot: balanced, seeded examples from the training split.")

    @field_validator("template")
    @classmethod
    def _has_text_slot(cls, value: str) -> str:
        return check_template(value)

    @field_validator("label_words")
    @classmethod
    def _two_label_words(cls, value: list[str]) -> list[str]:
        return check_label_words(value)


def fill(template: str, text: str) -> str:
    return template.replace(TEXT_SLOT, text)


def balanced_indices(labels: np.ndarray, count: int, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """``count`` row indices, half of each label (the positive half gets the odd one), seeded, in an
    order that alternates labels from a random start so neither label always comes last."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    allowed = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        allowed[exclude] = False
    per_label = {1: (count + 1) // 2, 0: count // 2}
    picked: dict[int, np.ndarray] = {}
    for label, wanted in per_label.items():
        pool = np.flatnonzero(allowed & (labels == label))
        if len(pool) < wanted:
            raise ValueError(f"needs {wanted} training reviews labelled {label}, the split has {len(pool)}")
        picked[label] = rng.choice(pool, size=wanted, replace=False)
    first = int(rng.integers(2))
    order: list[int] = []
    for position in range(max(per_label.values())):
        for label in (first, 1 - first):
            if position < len(picked[label]):
                order.append(int(picked[label][position]))
    return np.asarray(order, dtype=np.int64)


def choose_shots(train: TextDataset, shots: int, seed: int) -> list[tuple[str, int]]:
    indices = balanced_indices(np.asarray(train.labels), shots, seed)
    return [(train.texts[i], int(train.labels[i])) for i in indices]


def answer_text(answer_prefix: str, word: str) -> str:
    """What an answer says: the label word, after the answer prefix (and a space) when there is one."""
    prefix = answer_prefix.strip()
    return f"{prefix} {word.strip()}" if prefix else word.strip()


def chat_messages(
    template: str, label_words: list[str], shots: list[tuple[str, int]], text: str, answer_prefix: str = ""
) -> list[dict]:
    """k-shot as a conversation: each example a user turn answered by its label word (after the answer
    prefix, so the examples show the answer's very shape), then the review."""
    messages: list[dict] = []
    for example, label in shots:
        messages.append({"role": "user", "content": fill(template, example)})
        messages.append({"role": "assistant", "content": answer_text(answer_prefix, label_words[label])})
    messages.append({"role": "user", "content": fill(template, text)})
    return messages
