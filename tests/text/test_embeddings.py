"""Word vectors: file formats, coverage, and the content-keyed word2vec cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors
from helpers import run_cli, write_tiny_parquet_imdb

from imdb_sentiment.errors import UserError
from imdb_sentiment.text import embeddings
from imdb_sentiment.text.embeddings import (
    Word2VecSettings,
    build_embedding_matrix,
    detect_format,
    load_vectors,
    train_embeddings_command,
    train_or_load_word2vec,
    vectors_dim,
)
from imdb_sentiment.text.vocabulary import Vocabulary

WORDS = ["great", "awful", "film", "Paris"]
VECTORS = np.arange(16, dtype=np.float32).reshape(4, 4) / 10
FAST_W2V = Word2VecSettings(min_count=1, epochs=1, workers=1, sample=0.0)


def keyed_vectors() -> KeyedVectors:
    vectors = KeyedVectors(vector_size=4)
    vectors.add_vectors(WORDS, VECTORS)
    return vectors


def write_vectors(folder: Path, fmt: str) -> Path:
    path = folder / f"vectors.{fmt}"
    if fmt == "word2vec-binary":
        keyed_vectors().save_word2vec_format(str(path), binary=True)
    elif fmt == "word2vec-text":
        keyed_vectors().save_word2vec_format(str(path), binary=False)
    else:  # GloVe: no header line
        lines = [
            " ".join([word, *(f"{value:.6f}" for value in row)]) for word, row in zip(WORDS, VECTORS, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["word2vec-binary", "word2vec-text", "glove"])
def test_load_each_format_with_detection(tmp_path, fmt: str) -> None:
    path = write_vectors(tmp_path, fmt)
    assert detect_format(path) == fmt
    assert vectors_dim(path) == 4
    for requested in ("auto", fmt):
        vectors = load_vectors(path, requested)  # type: ignore[arg-type]
        assert list(vectors.index_to_key) == WORDS
        np.testing.assert_allclose(vectors["film"], VECTORS[2], atol=1e-6)


def test_missing_and_corrupt_files_raise_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_vectors(tmp_path / "nope.bin")
    with pytest.raises(UserError, match="does not exist"):
        vectors_dim(tmp_path / "nope.bin")
    binary = write_vectors(tmp_path, "word2vec-binary")
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(binary.read_bytes()[:-20])
    with pytest.raises(UserError, match="not a valid"):
        load_vectors(truncated)
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello world foo\nbar baz\n")
    with pytest.raises(UserError):
        load_vectors(garbage)
    # A GloVe file read as word2vec text: the first line is not a "<count> <dim>" header.
    with pytest.raises(UserError):
        load_vectors(write_vectors(tmp_path, "glove"), "word2vec-text")


def test_embedding_matrix_and_coverage() -> None:
    vocabulary = Vocabulary.build([["great", "film", "great", "unknownword", "paris"]], min_freq=1)
    matrix, coverage = build_embedding_matrix(vocabulary, keyed_vectors(), seed=0)
    assert matrix.shape == (len(vocabulary), 4)
    assert not matrix[0].any()  # padding row is zero
    np.testing.assert_allclose(matrix[vocabulary.index["great"]], VECTORS[0])
    np.testing.assert_allclose(matrix[vocabulary.index["paris"]], VECTORS[3])  # cased fallback
    assert (coverage.vocabulary_words, coverage.covered_words) == (4, 3)
    assert coverage.corpus_tokens == 5 and coverage.covered_tokens == 4
    assert coverage.as_dict()["token_coverage"] == 0.8


def test_word2vec_cache_is_keyed_by_content_and_settings(tmp_path) -> None:
    texts = [f"a great film number {i} !" for i in range(30)] + [f"an awful film {i}" for i in range(30)]
    first = train_or_load_word2vec(texts, 8, FAST_W2V, tmp_path)
    assert not first.from_cache and first.path.is_file()
    again = train_or_load_word2vec(list(texts), 8, FAST_W2V, tmp_path)
    assert again.from_cache and again.path == first.path
    np.testing.assert_array_equal(again.vectors["great"], first.vectors["great"])
    # Different content, different settings or a different size: a different cache entry.
    changed = train_or_load_word2vec([*texts[:-1], "an awful film 99"], 8, FAST_W2V, tmp_path)
    other_settings = train_or_load_word2vec(texts, 8, FAST_W2V.model_copy(update={"window": 2}), tmp_path)
    other_dim = train_or_load_word2vec(texts, 6, FAST_W2V, tmp_path)
    paths = {first.path, changed.path, other_settings.path, other_dim.path}
    assert len(paths) == 4 and not any(path.name.endswith(".tmp") for path in tmp_path.iterdir())
    # The number of worker threads does not change the result's key.
    assert train_or_load_word2vec(texts, 8, FAST_W2V.model_copy(update={"workers": 2}), tmp_path).from_cache


def test_damaged_cache_entry_is_rebuilt(tmp_path) -> None:
    texts = ["good film", "bad film"] * 5
    first = train_or_load_word2vec(texts, 4, FAST_W2V, tmp_path)
    first.path.write_bytes(b"10 4\n\x00\x01")
    rebuilt = train_or_load_word2vec(texts, 4, FAST_W2V, tmp_path)
    assert not rebuilt.from_cache and len(load_vectors(rebuilt.path)) == len(first.vectors)


def test_train_command_uses_train_and_unsup_never_test(tmp_path, monkeypatch) -> None:
    data = tmp_path / "imdb"
    write_tiny_parquet_imdb(data, size=40)
    seen: list[list[str]] = []
    real_train = embeddings._train_word2vec

    def spy(texts: list[str], dim: int, settings: Word2VecSettings) -> KeyedVectors:
        seen.append(list(texts))
        return real_train(texts, dim, settings)

    monkeypatch.setattr(embeddings, "_train_word2vec", spy)
    result = train_embeddings_command(
        str(data), dim=8, min_count=1, epochs=1, workers=1, cache_root=tmp_path / "c"
    )
    # 40 train reviews minus the 10% validation split, plus 20 unlabeled ones; no test review.
    assert len(seen[0]) == result["corpus_texts"] == 36 + 20
    assert Path(str(result["path"])).is_file() and result["dim"] == 8
    assert 0 < result["coverage"]["word_coverage"] <= 1  # type: ignore[index]


def test_embeddings_cli_train_and_coverage(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "imdb"
    write_tiny_parquet_imdb(data, size=40)
    code, out, err = run_cli(
        ["embeddings", "train", "--data", str(data), "--dim", "8", "--min-count", "1", "--epochs", "1",
         "--workers", "1"], capsys)  # fmt: skip
    assert code == 0, err
    assert "vocab_size" in out and "word_coverage" in out and "embeddings" in out
    vectors = write_vectors(tmp_path, "glove")
    code, out, err = run_cli(["embeddings", "coverage", str(vectors), "--data", str(data)], capsys)
    assert code == 0, err
    assert "token_coverage" in out
    code, out, err = run_cli(
        ["embeddings", "coverage", str(tmp_path / "missing.txt"), "--data", str(data)], capsys
    )
    assert code == 2 and "does not exist" in err
