"""Word tokenizer, vocabulary and the word-level :class:`TextEncoder` used by the word models.

Tokenization (:func:`tokenize`), applied to already-cleaned text (HTML removed by ``data.cleaning``):

1. lower-case, and map typographic apostrophes (’ ‘ `) to ``'`` so "don’t" and "don't" are one word;
2. keep, in this order of precedence:
   - ratings such as ``7/10`` or ``8.5/10`` as one token (they are among the strongest cues in IMDB);
   - words made of letters/digits in any script, with inner apostrophes kept, so contractions stay
     whole (``don't``, ``it's``, ``rock'n'roll``) and possessives stay attached (``film's``);
   - runs of ``!`` and ``?`` (``!!!`` and ``?!`` carry sentiment and intensity);
   - the emoticons ``:)`` ``:-)`` ``:(`` ``:-(`` and ``:D``;
3. drop everything else (other punctuation, symbols). Hyphenated words split into parts.

Word2vec training (``text.embeddings``) uses the very same function, so vectors and vocabulary agree.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import read_json, write_json_atomic
from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.text.spans import regex_tokens_with_spans
from imdb_sentiment.text.truncation import Truncation, truncate

TOKENIZER_VERSION = 1  # bump when the regex changes: cached word2vec vectors are keyed by it

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
_TOKEN = re.compile(
    r"\d+(?:\.\d+)?/\d+"  # ratings: 7/10, 8.5/10
    r"|[^\W_]+(?:'[^\W_]+)*"  # words with inner apostrophes: don't, rock'n'roll
    r"|[!?]+"  # ! ? !!! ?!
    r"|:-?[()]|:d(?![^\W_])"  # emoticons (lower-cased, so :D is :d)
)

PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


def tokenize(text: str) -> list[str]:
    """Split one (cleaned) review into lower-case word tokens; see the module docstring."""
    return _TOKEN.findall(text.lower().translate(_APOSTROPHES))


def tokenize_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """:func:`tokenize` and each token's character span in ``text`` (apostrophe mapping keeps lengths)."""
    return regex_tokens_with_spans(_TOKEN, text.translate(_APOSTROPHES))


def tokenize_all(texts: Iterable[str]) -> Iterator[list[str]]:
    return (tokenize(text) for text in texts)


class Vocabulary:
    """Token <-> id mapping. Id 0 is padding, id 1 stands for every unknown word."""

    def __init__(self, tokens: list[str], counts: dict[str, int] | None = None, total_tokens: int = 0) -> None:
        if tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError(f"a vocabulary starts with {PAD_TOKEN!r}, {UNK_TOKEN!r}")
        self.tokens = tokens
        self.index = {token: position for position, token in enumerate(tokens)}
        if len(self.index) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        # Corpus statistics, known only for a freshly built vocabulary (for embedding coverage).
        self.counts = counts or {}
        self.total_tokens = total_tokens

    @classmethod
    def build(cls, tokenized: Iterable[list[str]], min_freq: int = 2, max_size: int | None = None) -> Vocabulary:
        """Most frequent tokens first (ties broken alphabetically, so the result is deterministic);
        ``max_size`` counts the two special tokens."""
        counts: Counter[str] = Counter()
        for tokens in tokenized:
            counts.update(tokens)
        ranked = sorted(
            (token for token, count in counts.items() if count >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[: max(max_size - 2, 0)]
        kept = {token: counts[token] for token in ranked}
        return cls([PAD_TOKEN, UNK_TOKEN, *ranked], kept, sum(counts.values()))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def ids(self, tokens: Iterable[str]) -> list[int]:
        get = self.index.get
        return [get(token, UNK_ID) for token in tokens]

    def to_dict(self) -> dict[str, object]:
        return {"tokenizer_version": TOKENIZER_VERSION, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: dict[str, object], where: str = "vocabulary") -> Vocabulary:
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise UserError(f"{where} holds no token list; the saved model is corrupt, retrain it.")
        if data.get("tokenizer_version") != TOKENIZER_VERSION:
            raise UserError(
                f"{where} was built by tokenizer version {data.get('tokenizer_version')}, this code has "
                f"{TOKENIZER_VERSION}; retrain the model with this version."
            )
        return cls(tokens)

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls.from_dict(_read_json(path), str(path))


class WordEncoder(TextEncoder):
    """tokenize -> vocabulary ids -> truncate to ``max_length`` (head / tail / head+tail)."""

    FILE_NAME = "word_encoder.json"
    pad_id = PAD_ID

    def __init__(self, vocabulary: Vocabulary, max_length: int, truncation: Truncation = "head+tail") -> None:
        self.vocabulary = vocabulary
        self.max_length = max_length
        self.truncation: Truncation = truncation

    def encode_one(self, text: str) -> list[int]:
        ids = truncate(self.vocabulary.ids(tokenize(text)), self.max_length, self.truncation)
        # An empty review still needs one position so every network sees a non-empty sequence.
        return ids or [UNK_ID]

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [self.encode_one(text) for text in texts]

    def token_spans(self, texts: list[str]) -> list[list[tuple[int, int] | None]]:
        spans: list[list[tuple[int, int] | None]] = []
        for text in texts:
            kept = truncate(tokenize_with_spans(text)[1], self.max_length, self.truncation)
            spans.append(list(kept) or [None])  # encode_one's lone <unk> of an empty text
        return spans

    def save(self, directory: Path) -> None:
        data = {"max_length": self.max_length, "truncation": self.truncation, **self.vocabulary.to_dict()}
        write_json_atomic(Path(directory) / self.FILE_NAME, data)

    @classmethod
    def load(cls, directory: Path) -> WordEncoder:
        path = Path(directory) / cls.FILE_NAME
        data = _read_json(path)
        try:
            max_length, truncation = int(data["max_length"]), data["truncation"]
        except (KeyError, TypeError, ValueError):
            raise UserError(
                f"{path} lacks max_length/truncation; the saved model is corrupt, retrain it."
            ) from None
        return cls(Vocabulary.from_dict(data, str(path)), max_length, truncation)


def _read_json(path: Path) -> dict[str, object]:
    return read_json(path, "point to the folder of a saved word model, or retrain it")
