"""Texts for ``predict``: a file, table column or stdin that holds no text is a UserError naming it."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from imdb_sentiment.data.loaders import read_texts_table
from imdb_sentiment.errors import UserError
from imdb_sentiment.serving.predictor import read_prediction_inputs


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("empty.txt", "", "it is empty or has only blank lines"),
        ("blank.txt", "\n   \n\r\n\t\n", "it is empty or has only blank lines"),
        ("empty.csv", "", "the file is empty"),
        ("blank.tsv", "\n\n", "the file is empty"),
        ("header.csv", "id,text\n", "no rows below its header"),
        ("header.tsv", "id\treview\n", "no rows below its header"),
        ("blank-column.csv", 'id,text\n1,""\n2,"   "\n', "every value of column 'text' is empty"),
        ("empty.jsonl", "", "the file is empty"),
    ],
)
def test_a_file_without_texts_is_a_user_error_naming_it(
    tmp_path: Path, name: str, content: str, detail: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match="holds no texts") as error:
        read_texts_table(path, None, "utf-8")
    assert str(error.value).startswith(f"{path} holds no texts") and detail in str(error.value)


def test_header_only_parquet_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"id": pd.Series([], dtype="int64"), "text": pd.Series([], dtype="str")}).to_parquet(path)
    with pytest.raises(UserError, match=r"empty\.parquet holds no texts \(no rows below its header\)"):
        read_texts_table(path, None, "utf-8")


def test_a_chosen_empty_column_is_refused_even_if_another_has_text(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("id,text,notes\n1,good film,\n2,bad film,\n")
    with pytest.raises(UserError, match="every value of column 'notes' is empty"):
        read_texts_table(path, "notes", "utf-8")
    texts, ids = read_texts_table(path, None, "utf-8")  # the filled column still reads
    assert texts == ["good film", "bad film"] and ids == ["1", "2"]


def test_some_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "reviews.txt"
    path.write_text("good film\n\n  \nbad film\n")
    assert read_texts_table(path, None, "utf-8") == (["good film", "bad film"], ["0", "1"])


def test_empty_stdin_is_a_user_error(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n  \n"))
    with pytest.raises(UserError, match="stdin held no texts"):
        read_prediction_inputs(None, None, None, None, "utf-8")
