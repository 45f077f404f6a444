"""Tokenised corpora cached on disk, so word models tokenise a dataset once, not once per run.

Tokenising the 25,000 IMDB training reviews with :func:`~imdb_sentiment.text.vocabulary.tokenize`
takes 8-10 s on one core, and a word-model run tokenised its texts three times (vocabulary, train +
valid encoding, test encoding): on a fastText run that was as long as its epochs.

A :class:`TokenizedCorpus` holds every review as ids into the corpus's *own* token list (all tokens it
contains, first-seen order). The cache key is the sha256 of the texts (in order) and the tokenizer
version, so one entry serves every encoder setting: a vocabulary (any ``min_freq`` / ``vocab_size``)
and its ids, truncated to any ``max_length`` either way, are derived from it with numpy in well under
a second, and they equal what the uncached path gives (the tests compare them).

An entry is a folder ``cache_dir()/tokens/<key>/`` with ``tokens.json``, ``ids.npy`` (int32, all
reviews concatenated) and ``offsets.npy`` (int64, n + 1); it is written into a temporary folder and
renamed into place (atomic), and read back with ``np.load(allow_pickle=False)``: nothing is unpickled.
A damaged entry is rebuilt, never trusted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imdb_sentiment.io_utils import cache_dir
from imdb_sentiment.text.embeddings import corpus_digest
from imdb_sentiment.text.truncation import HEAD_SHARE, Truncation
from imdb_sentiment.text.vocabulary import PAD_TOKEN, TOKENIZER_VERSION, UNK_ID, UNK_TOKEN, Vocabulary, tokenize

logger = logging.getLogger("imdb_sentiment.text")

CACHE_VERSION = 1  # bump when the file layout changes
# Fewer texts than this are tokenised directly: a request to a server must not write cache entries.
MIN_CACHED_TEXTS = 1000
DISABLE_ENV = "IMDB_SENTIMENT_NO_TOKEN_CACHE"  # set to 1 to tokenise every time (and write nothing)


def token_cache_dir() -> Path:
    return cache_dir() / "tokens"


@dataclass
class TokenizedCorpus:
    """Reviews as ids into ``tokens``: review i is ``ids[offsets[i]:offsets[i + 1]]``."""

    tokens: list[str]
    ids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def tokenize(cls, texts: list[str]) -> TokenizedCorpus:
        index: dict[str, int] = {}
        flat: list[int] = []
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        for row, text in enumerate(texts):
            flat.extend(index.setdefault(token, len(index)) for token in tokenize(text))
            offsets[row + 1] = len(flat)
        return cls(list(index), np.asarray(flat, dtype=np.int32), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def vocabulary(self, min_freq: int, max_size: int | None) -> Vocabulary:
        """The same vocabulary as ``Vocabulary.build`` over these texts (same ranking and ties)."""
        counts = np.bincount(self.ids, minlength=len(self.tokens))
        kept = [position for position in np.flatnonzero(counts >= min_freq)]
        ranked = sorted(kept, key=lambda position: (-counts[position], self.tokens[position]))
        if max_size is not None:
            ranked = ranked[: max(max_size - 2, 0)]
        words = [self.tokens[position] for position in ranked]
        return Vocabulary(
            [PAD_TOKEN, UNK_TOKEN, *words],
            {word: int(counts[position]) for word, position in zip(words, ranked, strict=True)},
            int(counts.sum()),
        )

    def encode(self, vocabulary: Vocabulary, max_length: int, truncation: Truncation) -> list[list[int]]:
        """What ``WordEncoder.encode`` gives for these texts (tokenise, map, truncate, empty -> [UNK])."""
        lookup = np.fromiter(
            (vocabulary.index.get(token, UNK_ID) for token in self.tokens), dtype=np.int64, count=len(self.tokens)
        )
        mapped = lookup[self.ids].tolist()
        head = round(max_length * HEAD_SHARE)
        encoded = []
        for start, end in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(), strict=True):
            if end - start <= max_length:
                ids = mapped[start:end]
            elif truncation == "head":
                ids = mapped[start : start + max_length]
            elif truncation == "tail":
                ids = mapped[end - max_length : end]
            else:
                ids = mapped[start : start + head] + mapped[end - (max_length - head) : end]
            encoded.append(ids or [UNK_ID])
        return encoded

    # --------------------------------------------------------------------------------- the disk cache
    def save(self, folder: Path) -> None:
        """Write into a temporary sibling folder, then rename it into place (a reader never sees half)."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            (tmp / "tokens.json").write_text(json.dumps(self.tokens, ensure_ascii=False), encoding="utf-8")
            np.save(tmp / "ids.npy", self.ids)
            np.save(tmp / "offsets.npy", self.offsets)
            os.replace(tmp, folder)
        except OSError as exc:  # another process wrote it first, or the disk is full: the cache is optional
            logger.info("token cache: %s not written (%s)", folder, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path, expected_rows: int) -> TokenizedCorpus | None:
        try:
            tokens = json.loads((folder / "tokens.json").read_text(encoding="utf-8"))
            ids = np.load(folder / "ids.npy", allow_pickle=False)
            offsets = np.load(folder / "offsets.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        valid = (
            isinstance(tokens, list)
            and ids.dtype == np.int32
            and offsets.dtype == np.int64
            and offsets.shape == (expected_rows + 1,)
            and offsets[0] == 0
            and offsets[-1] == len(ids)
            and bool(np.all(np.diff(offsets) >= 0))
            and (len(ids) == 0 or (int(ids.min()) >= 0 and int(ids.max()) < len(tokens)))
        )
        return cls(tokens, ids, offsets) if valid else None


def cache_key(texts: list[str]) -> str:
    return f"{corpus_digest(texts)[:32]}-t{TOKENIZER_VERSION}-c{CACHE_VERSION}"


def tokenized_corpus(texts: list[str], cache_root: Path | None = None) -> TokenizedCorpus:
    """``texts`` tokenised: read from the cache when an intact entry exists, else tokenised (and cached
    when there are at least :data:`MIN_CACHED_TEXTS` of them)."""
    if len(texts) < MIN_CACHED_TEXTS or os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return TokenizedCorpus.tokenize(texts)
    folder = (Path(cache_root) if cache_root is not None else token_cache_dir()) / cache_key(texts)
    if folder.is_dir():
        cached = TokenizedCorpus.load(folder, len(texts))
        if cached is not None:
            logger.info("token cache: loaded %d tokenised texts from %s", len(texts), folder)
            return cached
        logger.warning("token cache: %s is damaged; tokenising again", folder)
        shutil.rmtree(folder, ignore_errors=True)
    corpus = TokenizedCorpus.tokenize(texts)
    corpus.save(folder)
    return corpus
