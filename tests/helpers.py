"""Test helpers shared by several test modules."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from imdb_sentiment.cli import main
from imdb_sentiment.data.dataset import TextDataset


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
