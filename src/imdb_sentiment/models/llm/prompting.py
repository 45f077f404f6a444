"""What every LLM classifier here shares: the instruction template (with its ``{text}`` slot), the
verbalizer (one label word per class), balanced seeded k-shot examples from the training split, and
the chat messages they make.

The template and label words default to the task's: the sentiment task keeps its question and the words
negative / positive; any other task's label words are its class names, and its template lists them.
The params keep ``None`` for a default, so a saved model resolves them again from its classes."""

from __future__ import annotations

import re
from typing import Annotated, Self

import numpy as np
from pydantic import AfterValidator, Field

from imdb_sentiment.config import DataConfig, ExperimentConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import RATINGS, SENTIMENT, LabelSpace, clip
from imdb_sentiment.data.loaders import detect_format
from imdb_sentiment.data.splits import resolve_data_path
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import ModelParams

TEXT_SLOT = "{text}"
DEFAULT_TEMPLATE = (  # the sentiment task's
    "Is the sentiment of this movie review positive or negative?\n\nReview: {text}\n\n"
    "Answer with one word: positive or negative."
)
DEFAULT_LABEL_WORDS = ("negative", "positive")  # the sentiment task's; index = label
WORD = re.compile(r"[^\W_]+")  # a word of an answer or a label word: letters and digits (punctuation splits)


def listing(words: list[str]) -> str:
    """``a, b or c``."""
    return ", ".join(words[:-1]) + " or " + words[-1]


def labels_template(words: list[str]) -> str:
    """The default template of a task other than sentiment: it lists the label words (the model must
    know its choices; sentiment's question names its two)."""
    choices = listing(words)
    return (
        f"Which of these labels fits this review: {choices}?\n\nReview: {TEXT_SLOT}\n\n"
        f"Answer with one word: {choices}."
    )


def check_template(template: str | None) -> str | None:
    """A template holds exactly one ``{text}`` slot (filled by plain replacement: other braces are text)."""
    if template is None:
        return None
    count = template.count(TEXT_SLOT)
    if count != 1:
        raise ValueError(f"the template must contain the review slot {TEXT_SLOT} exactly once (found {count})")
    return template


def check_label_words(words: list[str] | None) -> list[str] | None:
    """Two or more words, each with a letter or digit (what an answer is matched on), all different."""
    if words is None:
        return None
    if len(words) < 2 or any(not WORD.search(word) for word in words):
        raise ValueError("give one label word per class, in class order, each with a letter or digit")
    keys = [word.strip().lower() for word in words]
    if len(set(keys)) != len(keys):
        raise ValueError("the label words must differ")
    return words


# The prompt fields' types, checked wherever a prompt is given (the params, a search candidate).
Template = Annotated[str | None, AfterValidator(check_template)]
LabelWords = Annotated[list[str] | None, AfterValidator(check_label_words)]


class PromptParams(ModelParams):
    """The prompt settings every LLM classifier shares, validated in one place."""

    template: Template = Field(
        None,
        description="Instruction (user message) with one {text} slot for the review. Default: the sentiment "
        "question for the sentiment task, else one that lists the label words.",
    )
    label_words: LabelWords = Field(
        None,
        description="One word per class, in class order. Default: negative, positive for the sentiment "
        "task, else the class names.",
    )
    shots: int = Field(0, ge=0, le=64, description="k-shot: balanced, seeded examples from the training split.")

    def for_task(self, classes: LabelSpace) -> Self:
        """These params with the task's defaults filled in (label words, template); label words given for
        another number of classes: one line naming the field."""
        words = list(self.label_words or (DEFAULT_LABEL_WORDS if classes.is_sentiment else classes.names))
        check_label_word_count(len(words), classes.size, ", ".join(clip(name, 20) for name in classes.names[:12]))
        try:
            check_label_words(words)
        except ValueError as exc:
            raise UserError(f"model.params.label_words: the class names {words} make no label words ({exc}); "
                            "give label_words") from None  # fmt: skip
        template = self.template or (DEFAULT_TEMPLATE if classes.is_sentiment else labels_template(words))
        return self.model_copy(update={"label_words": words, "template": template})


def check_label_word_count(words: int, classes: int, names: str, field: str = "model.params.label_words") -> None:
    if words != classes:
        raise UserError(
            f"{field}: {words} words for {classes} classes ({names}); give one per class, in class order."
        )


def known_classes(data: DataConfig) -> tuple[int, str] | None:
    """The number of classes (and how they are named) the data section gives without reading the data:
    ``data.labels``, else the layout's (IMDB and MR: sentiment, or the 8 ratings); None for a table,
    whose classes are its label column's, known once it is read."""
    if data.labels is not None:
        return len(data.labels), ", ".join(data.labels)
    layout = data.format
    if layout == "auto":
        try:
            layout = detect_format(resolve_data_path(data.path))
        except UserError:  # no data yet: loading it will say so
            return None
    if layout == "table":
        return None
    classes = RATINGS if data.target == "rating" else SENTIMENT
    return classes.size, ", ".join(classes.names)


def check_label_words_fit_the_data(config: ExperimentConfig, params: PromptParams) -> None:
    """Before a run folder: label words given for another number of classes than the data has (when the
    data section tells; a table's count is checked when the fit starts)."""
    if params.label_words is None:
        return
    known = known_classes(config.data)
    if known is not None:
        check_label_word_count(len(params.label_words), *known)


def fill(template: str, text: str) -> str:
    return template.replace(TEXT_SLOT, text)


def calibration_rows(
    labels: np.ndarray, count: int, seed: int, exclude: np.ndarray, num_classes: int, blind: bool = False
) -> np.ndarray:
    """``count`` seeded rows outside ``exclude`` (fewer if there are not so many): balanced over the
    classes, or with ``blind`` drawn uniformly without reading ``labels`` (the prior calibration: no
    review's label is used, only the split's class shares)."""
    count = min(count, len(labels) - len(exclude))
    if not blind:
        return balanced_indices(labels, count, seed, exclude, num_classes)
    free = np.setdiff1d(np.arange(len(labels)), exclude)
    return np.sort(np.random.default_rng(seed).choice(free, size=count, replace=False))


def balanced_indices(
    labels: np.ndarray, count: int, seed: int, exclude: np.ndarray | None = None, num_classes: int = 2
) -> np.ndarray:
    """``count`` row indices, ``count // K`` of each label (the highest labels get the rest, one each:
    of two, the positive half gets the odd one), seeded, in an order that cycles through the labels from
    a random start so no label always comes last."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    allowed = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        allowed[exclude] = False
    extra = count % num_classes
    # Drawn from the highest label down: the draws (and so the shots) of two classes are as they always were.
    per_label = {label: count // num_classes + (label >= num_classes - extra)
                 for label in reversed(range(num_classes))}  # fmt: skip
    picked: dict[int, np.ndarray] = {}
    for label, wanted in per_label.items():
        pool = np.flatnonzero(allowed & (labels == label))
        if len(pool) < wanted:
            raise ValueError(f"needs {wanted} training reviews labelled {label}, the split has {len(pool)}")
        picked[label] = rng.choice(pool, size=wanted, replace=False)
    first = int(rng.integers(num_classes))
    cycle = [(first + step) % num_classes for step in range(num_classes)]
    order: list[int] = []
    for position in range(max(per_label.values())):
        for label in cycle:
            if position < len(picked[label]):
                order.append(int(picked[label][position]))
    return np.asarray(order, dtype=np.int64)


def choose_shots(train: TextDataset, shots: int, seed: int) -> list[tuple[str, int]]:
    indices = balanced_indices(np.asarray(train.labels), shots, seed, num_classes=train.classes.size)
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
