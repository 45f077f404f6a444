"""Token -> character offsets: cleaning with offsets, word and Hugging Face encoders' token_spans."""

from __future__ import annotations

import numpy as np
import pytest

from imdb_sentiment.config import CleaningConfig
from imdb_sentiment.data.cleaning import clean_text, clean_text_with_spans
from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder, load_tokenizer
from imdb_sentiment.models.hf.hub import minilm_path
from imdb_sentiment.text.vocabulary import Vocabulary, WordEncoder, tokenize, tokenize_with_spans

TRICKY = ["Don’t miss it!!! 8/10 :)", "İstanbul ΣΟΦΟΣ ﬁlm", "emoji 🎬🍿 great", "", "   ", "a-b c’s `quoted`"]
PIECES = ["a", "B", "<br />", "<b>", "</i>", "&amp;", "&eacute;", "&#39;", "&lt", "&ampx", "  ", "\n", "İ", "Σ",
          "é", "&", "<", ">", ".", "don't", "🎬"]  # fmt: skip


@pytest.mark.parametrize("lowercase", [False, True])
def test_cleaning_with_spans_matches_clean_text(lowercase) -> None:
    options = CleaningConfig(lowercase=lowercase)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        text = "".join(rng.choice(PIECES, size=int(rng.integers(0, 14))))
        cleaned, spans = clean_text_with_spans(text, options)
        assert cleaned == clean_text(text, options), text
        assert len(spans) == len(cleaned) and all(0 <= s < e <= len(text) for s, e in spans)


def test_cleaned_characters_point_at_their_origin() -> None:
    text = "Great<br />film &amp; cast"
    cleaned, spans = clean_text_with_spans(text, CleaningConfig())
    assert cleaned == "Great film & cast"
    assert [text[s:e] for s, e in spans[:7]] == ["G", "r", "e", "a", "t", "<br />", "f"]
    assert text[slice(*spans[cleaned.index("&")])] == "&amp;"


@pytest.mark.parametrize("text", TRICKY)
def test_word_tokens_with_spans_match_tokenize(text) -> None:
    tokens, spans = tokenize_with_spans(text)
    assert tokens == tokenize(text)
    for token, (start, end) in zip(tokens, spans, strict=True):
        # İ lowers to i + a combining dot, which the tokenizer drops: the span is the whole İ.
        assert token in text[start:end].lower().replace("’", "'")
        assert len(text[start:end]) <= len(token)


def test_word_encoder_spans_follow_truncation() -> None:
    text = " ".join(f"w{i}" for i in range(30))
    encoder = WordEncoder(Vocabulary.build([tokenize(text)], min_freq=1), max_length=8, truncation="head+tail")
    ids, spans = encoder.encode([text])[0], encoder.token_spans([text])[0]
    assert len(ids) == len(spans) == 8
    assert [text[s:e] for s, e in spans] == [encoder.vocabulary.tokens[i] for i in ids]
    assert encoder.token_spans([""]) == [[None]] and len(encoder.encode([""])[0]) == 1


@pytest.mark.parametrize("chunk", [False, True])
def test_hf_encoder_spans_align_with_its_ids(chunk) -> None:
    encoder = HFTokenizerEncoder(load_tokenizer(minilm_path()), max_length=16, chunk=chunk, chunk_overlap=4)
    texts = ["Unbelievably good: the cinematography is breathtaking and the score unforgettable, truly.", "ok"]
    for text, ids, spans in zip(texts, encoder.encode(texts), encoder.token_spans(texts), strict=True):
        assert len(ids) == len(spans)
        tokens = encoder.tokenizer.convert_ids_to_tokens(ids)
        for token, span in zip(tokens, spans, strict=True):
            if span is None:
                assert token in ("[CLS]", "[SEP]")
            else:
                assert text[span[0] : span[1]].lower() == token.removeprefix("##")
