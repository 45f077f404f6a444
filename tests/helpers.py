"""Test helpers shared by several test modules."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from imdb_sentiment.cli import main
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.models.base import FitContext


class NullCapture:
    """Stands in for pytest's capsys where none exists (module-scoped fixtures): captures nothing."""

    def readouterr(self):
        class Captured:
            out = err = ""

        return Captured()


def fit_context(**training) -> FitContext:
    """A fit context for a test: one thread, no progress bar, ``training`` fields as given."""
    from imdb_sentiment.config import TrainingConfig

    return FitContext(training=TrainingConfig(threads=1, **training), show_progress=False)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process exactly as the console script does; return (exit code, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["imdb-sentiment", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


POSITIVE_CUES = ("great", "wonderful", "excellent", "loved")
NEGATIVE_CUES = ("awful", "boring", "terrible", "hated")
FILLER = ("the", "movie", "plot", "actor", "scene", "was", "and", "a", "film", "story")
NEUTRAL_CUES = ("average", "okay", "mixed", "middling")
THREE_CLASSES = LabelSpace(("negative", "neutral", "positive"))


def tiny_reviews(
    size: int, seed: int, length: tuple[int, int] = (4, 20), filler: tuple[str, ...] = FILLER
) -> TextDataset:
    """Alternating negative / positive reviews: filler words of varied length plus two sentiment cue
    words, so any model learns them in a few steps. The one tiny-review generator of the tests."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index in range(size):
        label = index % 2
        cues = POSITIVE_CUES if label else NEGATIVE_CUES
        words = [*rng.choice(filler, size=int(rng.integers(*length))), *rng.choice(cues, size=2)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return TextDataset(texts, np.asarray(labels))


def tiny_three_class_reviews(size: int, seed: int, length: tuple[int, int] = (4, 20)) -> TextDataset:
    """Negative / neutral / positive reviews in turn (classes not named as sentiment's two, so every
    layer meets a third class): filler words plus two cue words of the class."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index in range(size):
        label = index % 3
        cues = (NEGATIVE_CUES, NEUTRAL_CUES, POSITIVE_CUES)[label]
        words = [*rng.choice(FILLER, size=int(rng.integers(*length))), *rng.choice(cues, size=2)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return TextDataset(texts, np.asarray(labels), classes=THREE_CLASSES)


def write_tiny_parquet_imdb(folder, size: int = 60, seed: int = 0) -> None:
    """A tiny dataset in the real Parquet layout (train/test/unsup), with IMDB's HTML line breaks."""
    folder.mkdir(parents=True, exist_ok=True)
    filler = (*FILLER, "<br /><br />")
    for offset, split in enumerate(("train", "test", "unsup")):
        reviews = tiny_reviews(size if split != "unsup" else size // 2, seed + offset, (8, 9), filler)
        labels = reviews.labels if split != "unsup" else np.full(len(reviews), -1)
        ratings = np.where(labels == 1, 8, np.where(labels == 0, 2, 0))
        pd.DataFrame(
            {"id": np.arange(len(reviews)), "rating": ratings, "label": labels, "text": reviews.texts}
        ).to_parquet(folder / f"{split}.parquet")


def one_line_user_error(call, *fragments: str) -> str:
    """Run ``call``, expect a one-line UserError containing every fragment; return the message."""
    import pytest

    from imdb_sentiment.errors import UserError

    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def save_tiny_causal_lm(folder, seed: int = 0):
    """A random 1-layer Llama and a word-level tokenizer (built with ``tokenizers``) that knows the
    tiny reviews' words, the default template's and ChatML's markers, saved to ``folder``."""
    import re

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from imdb_sentiment.models.llm.prompting import DEFAULT_TEMPLATE

    special = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    words = {*FILLER, *POSITIVE_CUES, *NEGATIVE_CUES, "positive", "negative", "user", "assistant", "system",
             *re.findall(r"\w+|[^\w\s]", DEFAULT_TEMPLATE.replace("{text}", ""))}  # fmt: skip
    vocab = {token: index for index, token in enumerate([*special, *sorted(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )  # fmt: skip
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=3, bos_token_id=None,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


_TINY_LM_FOLDER = None


def tiny_causal_lm_folder() -> str:
    """One tiny causal LM folder per test process (made on first use)."""
    global _TINY_LM_FOLDER
    if _TINY_LM_FOLDER is None:
        import tempfile
        from pathlib import Path

        _TINY_LM_FOLDER = str(save_tiny_causal_lm(Path(tempfile.mkdtemp(prefix="tiny-llm-"))))
    return _TINY_LM_FOLDER
