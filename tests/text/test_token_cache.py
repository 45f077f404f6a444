"""The on-disk token cache gives exactly what tokenising gives, and never trusts a damaged entry."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_reviews

from imdb_sentiment.text import token_cache
from imdb_sentiment.text.token_cache import TokenizedCorpus, tokenized_corpus
from imdb_sentiment.text.vocabulary import Vocabulary, WordEncoder, tokenize

TEXTS = [*tiny_reviews(40, 3).texts, "", "!!! 7/10 don't :) Café’s", "a a b b c"]


@pytest.fixture(autouse=True)
def cache_small_inputs(monkeypatch):
    monkeypatch.setattr(token_cache, "MIN_CACHED_TEXTS", 1)
    monkeypatch.delenv(token_cache.DISABLE_ENV, raising=False)


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_cached_vocabulary_and_ids_equal_the_direct_ones(tmp_path, truncation) -> None:
    tokenized_corpus(TEXTS, tmp_path)  # writes the entry
    (entry,) = tmp_path.iterdir()
    assert sorted(path.name for path in entry.iterdir()) == ["ids.npy", "offsets.npy", "tokens.json"]
    cached = tokenized_corpus(TEXTS, tmp_path)  # reads it back
    for min_freq, max_size in [(1, None), (2, 6)]:
        vocabulary = cached.vocabulary(min_freq, max_size)
        direct = Vocabulary.build((tokenize(text) for text in TEXTS), min_freq=min_freq, max_size=max_size)
        assert (vocabulary.tokens, vocabulary.counts, vocabulary.total_tokens) == (
            direct.tokens, direct.counts, direct.total_tokens,
        )  # fmt: skip
        for max_length in (3, 8, 100):
            expected = WordEncoder(direct, max_length, truncation).encode(TEXTS)
            assert cached.encode(vocabulary, max_length, truncation) == expected


def test_a_damaged_entry_is_rebuilt_and_other_texts_get_their_own(tmp_path) -> None:
    tokenized_corpus(TEXTS, tmp_path)
    (entry,) = tmp_path.iterdir()
    np.save(entry / "offsets.npy", np.array([0, 10**9]))  # offsets past the ids
    again = tokenized_corpus(TEXTS, tmp_path)
    assert again.encode(again.vocabulary(1, None), 50, "head") == TokenizedCorpus.tokenize(TEXTS).encode(
        again.vocabulary(1, None), 50, "head"
    )
    assert TokenizedCorpus.load(entry, len(TEXTS)) is not None  # rewritten intact
    tokenized_corpus(TEXTS[:-1], tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def test_the_cache_can_be_switched_off(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(token_cache.DISABLE_ENV, "1")
    tokenized_corpus(TEXTS, tmp_path)
    assert not list(tmp_path.iterdir())
