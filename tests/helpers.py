"""Test helpers shared by several test modules."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from imdb_sentiment.cli import main


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


def write_tiny_parquet_imdb(folder, size: int = 60, seed: int = 0) -> None:
    """A tiny dataset in the real Parquet layout (train/test/unsup)."""
    rng = np.random.default_rng(seed)
    positive, negative = ["great", "wonderful", "excellent", "superb"], ["awful", "boring", "terrible", "dull"]
    filler = ["the", "movie", "plot", "actor", "scene", "was", "and", "a", "film", "story", "<br /><br />"]
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test", "unsup"):
        rows = []
        for index in range(size if split != "unsup" else size // 2):
            label = index % 2 if split != "unsup" else -1
            cue = positive if label == 1 else negative if label == 0 else filler
            words = list(rng.choice(filler, 8)) + list(rng.choice(cue, 2))
            rng.shuffle(words)
            rating = (8 if label == 1 else 2) if label >= 0 else 0
            rows.append({"id": index, "rating": rating, "label": label, "text": " ".join(words)})
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")
