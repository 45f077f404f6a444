"""Dataset statistics: exact values on hand-made data, and the table that shows them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, tiny_three_class_reviews
from rich.console import Console
from rich.table import Table

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data.dataset import UNLABELED, TextDataset
from imdb_sentiment.data.loaders import read_dataset
from imdb_sentiment.data.stats import dataset_stats, render_stats, stats_by_split, vocabulary


def words(count: int, word: str = "word") -> str:
    return " ".join([word] * count)


def test_counts_lengths_and_shares() -> None:
    texts = ["one two three", words(300), words(600), "a b", "Great film!"]
    stats = dataset_stats(TextDataset(texts, [1, 0, 1, 0, UNLABELED]))
    assert stats["count"] == 5
    assert stats["labels"] == {"negative": 2, "positive": 2, "unlabeled": 1}
    assert stats["positive_share"] == 0.5
    lengths = np.array([3, 300, 600, 2, 2])
    summary = stats["words_per_review"]
    assert summary["mean"] == pytest.approx(lengths.mean())
    assert summary["median"] == 3
    assert (summary["min"], summary["max"]) == (2, 600)
    for key, q in (("p90", 90), ("p95", 95), ("p99", 99)):
        assert summary[key] == pytest.approx(np.percentile(lengths, q))
    assert stats["chars_per_review"]["min"] == 3 and stats["chars_per_review"]["max"] == len(words(600))
    assert stats["share_over_256_words"] == pytest.approx(2 / 5)
    assert stats["share_over_512_words"] == pytest.approx(1 / 5)
    json.dumps(stats)  # plain values only


def test_words_are_whitespace_tokens() -> None:
    stats = dataset_stats(TextDataset(["Well... it's   great, really!\tYes"], [1]))
    assert stats["words_per_review"]["max"] == 5


def test_vocabulary_tokenisation() -> None:
    assert vocabulary(["Great great GREAT! great's", "don't  DON'T dont", "snake_case 1999 café"]) == {
        "great", "great's", "don't", "dont", "snake", "case", "1999", "café",
    }  # fmt: skip
    stats = dataset_stats(TextDataset(["The film, the FILM.", "the end"], [1, 0]))
    assert stats["vocabulary_size"] == 3


def test_threshold_is_strictly_longer() -> None:
    stats = dataset_stats(TextDataset([words(256), words(257), words(512), words(513)], [0, 1, 0, 1]))
    assert stats["share_over_256_words"] == 0.75
    assert stats["share_over_512_words"] == 0.25


def test_unlabeled_and_empty_datasets() -> None:
    unsup = dataset_stats(TextDataset(["a b", "c"], [UNLABELED, UNLABELED]))
    assert unsup["positive_share"] is None and unsup["labels"]["unlabeled"] == 2
    empty = dataset_stats(TextDataset([], np.zeros(0, dtype=np.int64)))
    assert empty["count"] == 0 and empty["vocabulary_size"] == 0
    assert set(empty["words_per_review"].values()) == {None}
    assert empty["share_over_256_words"] is None
    render_stats({"empty": empty})  # renders without numbers to format


def test_total_is_computed_on_the_union() -> None:
    train = TextDataset(["good film", "bad film"], [1, 0])
    test = TextDataset(["good plot here", "bad", "fine"], [1, 0, 1])
    result = stats_by_split({"train": train, "test": test})
    assert list(result) == ["train", "test", "all"]
    total = result["all"]
    assert total["count"] == 5 and total["labels"] == {"negative": 2, "positive": 3, "unlabeled": 0}
    # union of {good, film, bad} and {good, plot, here, bad, fine}: not the sum 3 + 5
    assert total["vocabulary_size"] == 6
    assert total["words_per_review"]["median"] == 2
    assert total == dataset_stats(TextDataset(train.texts + test.texts, [1, 0, 1, 0, 1]))
    assert list(stats_by_split({"train": train})) == ["train"]
    assert list(stats_by_split({"train": train, "test": test}, total=None)) == ["train", "test"]


def test_render_stats_table() -> None:
    result = stats_by_split({"train": TextDataset(["good film", "bad film"], [1, 0]),
                             "test": TextDataset(["great", words(600)], [1, 0])})  # fmt: skip
    table = render_stats(result)
    assert isinstance(table, Table)
    assert [column.header for column in table.columns] == ["statistic", "train", "test", "all"]
    console = Console(record=True, width=120)
    console.print(table)
    text = console.export_text()
    for fragment in (
        "Dataset statistics",
        "reviews",
        "words: p95",
        "vocabulary",
        "longer than 512 words",
        "25.0%",
    ):
        assert fragment in text


def test_stats_of_the_tiny_fixture(tiny_imdb_parquet_shared: Path) -> None:
    splits = read_dataset(tiny_imdb_parquet_shared, DataConfig())
    result = stats_by_split(splits.parts())
    assert [result[name]["count"] for name in ("train", "test", "unsup", "all")] == [40, 40, 20, 100]
    assert result["train"]["positive_share"] == 0.5
    assert result["unsup"]["labels"]["unlabeled"] == 20
    assert result["all"]["share_over_256_words"] == 0.0
    assert {"great", "awful", "café", "it's"} <= vocabulary(splits.train.texts)


def test_three_classes_are_counted_by_name_in_every_split() -> None:
    # Each split in the training split's classes (unsup, unlabelled, carries sentiment's by default).
    train, test = tiny_three_class_reviews(9, 0), tiny_three_class_reviews(4, 1)
    unsup = TextDataset(["just text"], [UNLABELED])
    result = stats_by_split({"train": train, "test": test, "unsup": unsup})
    assert result["train"]["labels"] == {"negative": 3, "neutral": 3, "positive": 3, "unlabeled": 0}
    assert result["test"]["class_shares"] == {"negative": 0.5, "neutral": 0.25, "positive": 0.25}
    assert result["unsup"]["labels"] == {"negative": 0, "neutral": 0, "positive": 0, "unlabeled": 1}
    assert result["all"]["labels"]["neutral"] == 4 and "positive_share" not in result["all"]
    console = Console(record=True, width=120)
    console.print(render_stats(result))
    text = console.export_text()
    assert "class neutral" in text and "3 (33.3%)" in text and "positive share" not in text


def test_data_stats_of_the_rating_task(tmp_path, capsys) -> None:
    # --set data.target=rating: IMDB's eight star classes, each counted (an IMDB file may lack some).
    folder = tmp_path / "imdb"
    folder.mkdir()
    ratings = {"train": [1, 2, 3, 4, 7, 8, 9, 10, 10], "test": [1, 10, 4]}
    for split, stars in ratings.items():
        pd.DataFrame({"text": [f"review {index}" for index in range(len(stars))], "rating": stars,
                      "label": [int(star > 5) for star in stars]}).to_parquet(folder / f"{split}.parquet")  # fmt: skip
    code, stdout, err = run_cli(["data", "stats", "--data", str(folder), "--set", "data.target=rating"], capsys)
    assert code == 0, err
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in stdout.splitlines() if "│ class" in line
    }
    assert list(rows) == [f"class {star}" for star in ("1", "2", "3", "4", "7", "8", "9", "10")]
    assert rows["class 10"] == "2 (22.2%)" and rows["class 2"] == "1 (11.1%)"
    code, stdout, _ = run_cli(["data", "stats", "--data", str(folder)], capsys)
    assert code == 0 and "positive share" in stdout and "class 10" not in stdout  # sentiment, as ever
    code, _, err = run_cli(["data", "stats", "--data", str(folder), "--set", "model.name=nbsvm"], capsys)
    assert code == 2 and "data section only" in err
