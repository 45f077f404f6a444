"""Classes from the data: names kept, order, sentiment as before, the rating task, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import one_line_user_error, write_tiny_parquet_imdb

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data.labels import RATINGS, SENTIMENT, LabelSpace, infer_label_space
from imdb_sentiment.data.loaders import read_dataset
from imdb_sentiment.data.splits import load_data


def table(path: Path, labels: list[object], texts: list[str] | None = None) -> Path:
    texts = texts or [f"review number {index} of the table" for index in range(len(labels))]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "cells",
    [["pos", "neg"], ["Positive", "negative"], [1, 0], [1.0, 0.0], ["true", "false"], ["1", "0"]],
)
def test_spellings_of_sentiment_are_the_binary_task_as_before(cells: list[object]) -> None:
    space = infer_label_space(cells * 3, "t.csv", "label")
    assert space is SENTIMENT and space.probability_columns() == ["prob_positive"]
    assert space.encode(cells, "t.csv", "label").tolist() == [1, 0]


def test_classes_keep_their_names_in_numeric_or_alphabetical_or_given_order() -> None:
    assert infer_label_space(["neutral", "positive", "negative"], "t", "label").names == (
        "negative", "neutral", "positive")  # fmt: skip
    assert infer_label_space([10, 2, 1, 2.0], "t", "label").names == ("1", "2", "10")  # numbers: by value
    given = infer_label_space(["b", "a", "c"], "t", "label", order=["c", "b", "a"], ordered=True)
    assert given == LabelSpace(("c", "b", "a"), ordered=True)
    assert infer_label_space(["pos", "neg"], "t", "label", order=["neg", "pos"]).names == ("neg", "pos")


def test_refusals_are_one_line_naming_the_column() -> None:
    one_line_user_error(lambda: infer_label_space(["a"] * 5, "t.csv", "label"), "one class only", "'a'")
    one_line_user_error(
        lambda: infer_label_space([f"text {i}" for i in range(1001)], "t.csv", "review"),
        "1,001 distinct labels", "probably the text", "--label-column",
    )  # fmt: skip
    one_line_user_error(
        lambda: infer_label_space(["a", "b", "z"], "t.csv", "label", order=["a", "b"]), "'z'", "data.labels"
    )
    space = LabelSpace(("a", "b", "c"))
    one_line_user_error(lambda: space.encode(["a", "q", "q"], "test.csv", "label"), "'q'", "2 row(s)",
                        "first at row 2", "never uses")  # fmt: skip


def test_a_three_class_table_and_a_test_label_never_seen_in_training(tmp_path: Path) -> None:
    labels = ["negative", "neutral", "positive"] * 8
    train = table(tmp_path / "train.csv", labels)
    test = table(tmp_path / "test.csv", ["neutral", "positive"])
    data = load_data(DataConfig(path=str(train), test_path=str(test)))
    assert data.classes.names == ("negative", "neutral", "positive")
    assert data.test.labels.tolist() == [1, 2] and data.summary()["classes"]["names"] == list(data.classes.names)
    table(test, ["neutral", "mixed"])
    one_line_user_error(lambda: load_data(DataConfig(path=str(train), test_path=str(test))), "'mixed'",
                        "test.csv", "never uses")  # fmt: skip


def test_a_class_listed_but_never_trained_on_and_a_limit_too_small_for_the_classes(tmp_path: Path) -> None:
    train = table(tmp_path / "train.csv", ["a", "b", "c"] * 10)
    one_line_user_error(
        lambda: load_data(DataConfig(path=str(train), labels=["a", "b", "c", "d"])), "'d'", "data.labels"
    )
    one_line_user_error(lambda: load_data(DataConfig(path=str(train), limit=4)), "data.limit", "raise it")
    # No limit: a class of one review, held out by the splits (the message named data.limit: None before)
    table(train, ["a", "b"] * 10 + ["c"], [f"review {index}" for index in range(21)])
    message = one_line_user_error(lambda: load_data(DataConfig(path=str(train), seed=0)), "'c'", "too few reviews")
    assert "data.limit" not in message


def test_the_rating_target_reads_stars_from_the_imdb_layouts(tmp_path: Path) -> None:
    folder = tmp_path / "imdb"
    write_tiny_parquet_imdb(folder)  # ratings 2 (negative) and 8 (positive)
    splits = read_dataset(folder, DataConfig(target="rating"))
    assert splits.train.classes is RATINGS and splits.unsup is not None
    assert set(np.asarray(RATINGS.names)[splits.train.labels]) == {"2", "8"}
    assert RATINGS.values is not None and RATINGS.values.tolist() == [1, 2, 3, 4, 7, 8, 9, 10]
    one_line_user_error(lambda: read_dataset(folder, DataConfig(labels=["a", "b"])), "data.labels", "table")


def test_the_rating_target_refuses_layouts_without_ratings(tmp_path: Path) -> None:
    train = table(tmp_path / "train.csv", ["a", "b"] * 4)
    one_line_user_error(lambda: read_dataset(train, DataConfig(target="rating")), "data.target", "label_column")
