"""Tokenizer, vocabulary and the word encoder."""

from __future__ import annotations

import json

import pytest

from imdb_sentiment.errors import UserError
from imdb_sentiment.text.vocabulary import PAD_ID, UNK_ID, Vocabulary, WordEncoder, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The Movie was GREAT", ["the", "movie", "was", "great"]),
        ("I don't like it, it's dull.", ["i", "don't", "like", "it", "it's", "dull"]),
        ("I didn’t care", ["i", "didn't", "care"]),  # typographic apostrophe
        ("Wow!!! Really?! Why?", ["wow", "!!!", "really", "?!", "why", "?"]),
        ("Solid 7/10, maybe 8.5/10", ["solid", "7/10", "maybe", "8.5/10"]),
        ("Loved it :) but :-( ending :D", ["loved", "it", ":)", "but", ":-(", "ending", ":d"]),
        ("well-made rock'n'roll film's end", ["well", "made", "rock'n'roll", "film's", "end"]),
        ("Café déjà vu", ["café", "déjà", "vu"]),
        ("   ", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_vocabulary_build_orders_by_frequency_then_alphabetically() -> None:
    corpus = [["b", "a", "c"], ["a", "b", "d"], ["a"]]
    vocabulary = Vocabulary.build(corpus, min_freq=2)
    assert vocabulary.tokens == ["<pad>", "<unk>", "a", "b"]  # c, d seen once
    assert vocabulary.ids(["a", "b", "zzz"]) == [2, 3, UNK_ID]
    assert vocabulary.counts == {"a": 3, "b": 2}
    assert vocabulary.total_tokens == 7
    assert len(Vocabulary.build(corpus, min_freq=1, max_size=3)) == 3  # specials count towards max_size
    assert "a" in vocabulary and "c" not in vocabulary


def test_vocabulary_rejects_bad_token_lists() -> None:
    with pytest.raises(ValueError):
        Vocabulary(["a", "<pad>", "<unk>"])
    with pytest.raises(ValueError):
        Vocabulary(["<pad>", "<unk>", "a", "a"])


def test_vocabulary_json_round_trip(tmp_path) -> None:
    vocabulary = Vocabulary.build([["great", "film", "great"]], min_freq=1)
    vocabulary.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").tokens == vocabulary.tokens


def test_vocabulary_load_errors_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        Vocabulary.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Vocabulary.load(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"tokenizer_version": -1, "tokens": ["<pad>", "<unk>"]}))
    with pytest.raises(UserError, match="tokenizer version"):
        Vocabulary.load(tmp_path / "old.json")


def _encoder(max_length: int, truncation: str = "head+tail") -> WordEncoder:
    words = [f"w{i}" for i in range(10)]
    return WordEncoder(Vocabulary.build([words], min_freq=1), max_length, truncation)  # type: ignore[arg-type]


def test_word_encoder_truncates_head_tail_and_both() -> None:
    text = " ".join(f"w{i}" for i in range(10))
    ids = {strategy: _encoder(4, strategy).encode([text])[0] for strategy in ("head", "tail", "head+tail")}
    vocabulary = _encoder(4).vocabulary
    assert [vocabulary.tokens[i] for i in ids["head"]] == ["w0", "w1", "w2", "w3"]
    assert [vocabulary.tokens[i] for i in ids["tail"]] == ["w6", "w7", "w8", "w9"]
    assert [vocabulary.tokens[i] for i in ids["head+tail"]] == ["w0", "w7", "w8", "w9"]


def test_word_encoder_maps_unknown_words_and_never_returns_empty() -> None:
    encoder = _encoder(8)
    assert encoder.encode(["w1 unseen"])[0] == [encoder.vocabulary.index["w1"], UNK_ID]
    assert encoder.encode([""])[0] == [UNK_ID]


def test_word_encoder_collate_pads_with_zero() -> None:
    encoder = _encoder(8)
    batch = encoder.collate([{"input_ids": [3, 4, 5], "label": 1}, {"input_ids": [6], "label": 0}])
    assert batch["input_ids"].tolist() == [[3, 4, 5], [6, PAD_ID, PAD_ID]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_word_encoder_save_load(tmp_path) -> None:
    encoder = _encoder(5, "tail")
    encoder.save(tmp_path)
    loaded = WordEncoder.load(tmp_path)
    assert (loaded.max_length, loaded.truncation) == (5, "tail")
    text = "w3 w1 nothing w9 w2 w2 w8"
    assert loaded.encode([text]) == encoder.encode([text])
    (tmp_path / WordEncoder.FILE_NAME).write_text(json.dumps({"tokens": ["<pad>", "<unk>"]}))
    with pytest.raises(UserError):
        WordEncoder.load(tmp_path)
