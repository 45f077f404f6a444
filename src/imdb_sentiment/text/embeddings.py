"""Word vectors for the word models: in-domain word2vec (cached), or a user's pretrained file.

- :func:`train_or_load_word2vec` trains gensim word2vec on the training split plus the unlabeled
  reviews (never the test split: callers pass only those texts), tokenized exactly like the word
  models (:func:`imdb_sentiment.text.vocabulary.tokenize`). The result is cached under
  ``cache_dir()/embeddings`` in word2vec binary format, keyed by a sha256 of the corpus content, the
  settings and the tokenizer version, and written atomically: a second run (or another model) with the
  same corpus and settings loads it in about a second.
- :func:`load_vectors` reads word2vec binary, word2vec text and GloVe text files (format detected).
- :func:`build_embedding_matrix` lays the vectors out in vocabulary order and reports coverage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import atomic_path, cache_dir
from imdb_sentiment.text.vocabulary import PAD_ID, TOKENIZER_VERSION, Vocabulary, tokenize

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

    from imdb_sentiment.data.splits import PreparedData

logger = logging.getLogger("imdb_sentiment.embeddings")

VectorFormat = Literal["auto", "word2vec-binary", "word2vec-text", "glove"]
VECTOR_FORMATS: tuple[str, ...] = ("auto", "word2vec-binary", "word2vec-text", "glove")
CACHE_VERSION = 1  # bump when the training recipe changes in a way the settings do not capture


class Word2VecSettings(BaseModel):
    """gensim word2vec settings (the vector size comes from the model's ``embedding_dim``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    window: int = Field(5, ge=1, le=50, description="Context words on each side.")
    min_count: int = Field(3, ge=1, description="Ignore rarer words.")
    epochs: int = Field(5, ge=1, le=100)
    skip_gram: bool = Field(True, description="Skip-gram (better for rare words) instead of CBOW.")
    negative: int = Field(5, ge=0, le=50, description="Negative samples.")
    sample: float = Field(1e-4, ge=0.0, lt=1.0, description="Down-sampling of frequent words.")
    workers: int = Field(2, ge=1, le=64, description="Threads (does not change the cache key).")
    seed: int = Field(1, ge=0)


def embeddings_cache_dir() -> Path:
    return cache_dir() / "embeddings"


def corpus_digest(texts: Iterable[str]) -> str:
    """sha256 of the texts in order, each length-prefixed so that boundaries matter."""
    digest = hashlib.sha256()
    for text in texts:
        raw = text.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def cache_key(corpus_sha256: str, dim: int, settings: Word2VecSettings) -> str:
    recipe = {
        "corpus": corpus_sha256,
        "dim": dim,
        "tokenizer": TOKENIZER_VERSION,
        "cache_version": CACHE_VERSION,
        **settings.model_dump(exclude={"workers"}),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


@dataclass
class TrainedVectors:
    vectors: KeyedVectors
    path: Path
    from_cache: bool
    seconds: float


def train_or_load_word2vec(
    texts: list[str], dim: int, settings: Word2VecSettings | None = None, cache_root: Path | None = None
) -> TrainedVectors:
    """Word2vec on ``texts`` (pass train + unlabeled texts, never test), cached by content."""
    settings = settings or Word2VecSettings()
    cache_root = Path(cache_root) if cache_root is not None else embeddings_cache_dir()
    started = time.perf_counter()
    key = cache_key(corpus_digest(texts), dim, settings)
    path = cache_root / f"word2vec-{dim}d-{key[:20]}.bin"
    if path.is_file():
        try:
            vectors = load_vectors(path, "word2vec-binary")
        except UserError:  # a damaged cache entry is rebuilt rather than reported
            logger.warning("cached vectors %s are unreadable; retraining", path)
        else:
            logger.info("word2vec: loaded cached vectors %s", path)
            return TrainedVectors(vectors, path, True, time.perf_counter() - started)
    vectors = _train_word2vec(texts, dim, settings)
    with atomic_path(path) as tmp:
        vectors.save_word2vec_format(str(tmp), binary=True)
    seconds = time.perf_counter() - started
    logger.info("word2vec: trained %d vectors in %.0fs, cached at %s", len(vectors), seconds, path)
    return TrainedVectors(vectors, path, False, seconds)


def _train_word2vec(texts: list[str], dim: int, settings: Word2VecSettings) -> KeyedVectors:
    from gensim.models import Word2Vec

    # gensim's corpus_file mode reads a whitespace-tokenized file without the GIL, so it scales with
    # workers; our tokens never contain whitespace. Tokenizing once also avoids re-tokenizing per epoch.
    with tempfile.TemporaryDirectory(prefix="imdb-w2v-") as folder:
        corpus_file = Path(folder) / "corpus.txt"
        with open(corpus_file, "w", encoding="utf-8") as handle:
            for text in texts:
                tokens = tokenize(text)
                if tokens:
                    handle.write(" ".join(tokens) + "\n")
        model = Word2Vec(
            corpus_file=str(corpus_file),
            vector_size=dim,
            window=settings.window,
            min_count=settings.min_count,
            epochs=settings.epochs,
            sg=int(settings.skip_gram),
            negative=settings.negative,
            sample=settings.sample,
            workers=settings.workers,
            seed=settings.seed,
        )
    return model.wv


# ------------------------------------------------------------------------------------ vectors files
def detect_format(path: Path) -> Literal["word2vec-binary", "word2vec-text", "glove"]:
    """word2vec files start with a "<count> <dim>" header; binary ones then hold raw float32s.
    GloVe files have no header: every line is a word and its numbers."""
    with open(path, "rb") as handle:
        first = handle.readline(1 << 16)
        rest = handle.read(1 << 14)
    fields = first.split()
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        second = rest.split(b"\n", 1)[0]
        try:
            values = second.decode("utf-8").split()[1:]
            [float(value) for value in values]
        except (UnicodeDecodeError, ValueError):
            return "word2vec-binary"
        return "word2vec-text" if len(values) == int(fields[1]) else "word2vec-binary"
    return "glove"


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(
            f"Vectors file {path} does not exist. Pass a word2vec (.bin/.txt) or GloVe (.txt) file, "
            "or use embeddings 'word2vec' (trained here) or 'random'."
        )


def vectors_dim(path: Path | str, fmt: VectorFormat = "auto") -> int:
    """The vector size of a file, read from its first line (cheap: for config checks)."""
    path = Path(path).expanduser()
    _require_file(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    with open(path, "rb") as handle:
        fields = handle.readline(1 << 16).split()
    try:
        dim = int(fields[1]) if fmt != "glove" else len(fields) - 1
        if fmt == "glove":
            [float(value) for value in fields[1:]]
    except (IndexError, ValueError):
        dim = 0
    if dim <= 0:
        raise UserError(
            f"{path} does not look like a {fmt} vectors file (bad first line). "
            "Check the file or set the format explicitly (word2vec-binary, word2vec-text, glove)."
        )
    return dim


def load_vectors(path: Path | str, fmt: VectorFormat = "auto") -> KeyedVectors:
    """Load word2vec binary / word2vec text / GloVe text vectors; user errors become UserError."""
    from gensim.models import KeyedVectors

    path = Path(path).expanduser()
    _require_file(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    try:
        vectors = KeyedVectors.load_word2vec_format(
            str(path), binary=fmt == "word2vec-binary", no_header=fmt == "glove"
        )
    except (ValueError, EOFError, UnicodeDecodeError, IndexError, OSError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(
            f"{path} is not a valid {fmt} vectors file ({detail}). Check that the file is complete and "
            "that its format is word2vec binary, word2vec text or GloVe text."
        ) from None
    if len(vectors) == 0:
        raise UserError(f"{path} holds no vectors. Use a non-empty vectors file.")
    return vectors


# ---------------------------------------------------------------------------------- matrix/coverage
@dataclass
class Coverage:
    """How much of a vocabulary (and of the tokens it was built from) has a pretrained vector."""

    vocabulary_words: int
    covered_words: int
    corpus_tokens: int
    covered_tokens: int

    @property
    def word_share(self) -> float:
        return self.covered_words / max(self.vocabulary_words, 1)

    @property
    def token_share(self) -> float:
        return self.covered_tokens / max(self.corpus_tokens, 1)

    def as_dict(self) -> dict[str, float]:
        return {
            "vocabulary_words": self.vocabulary_words,
            "covered_words": self.covered_words,
            "word_coverage": round(self.word_share, 4),
            "token_coverage": round(self.token_share, 4),
        }


def _lookup(vectors: KeyedVectors, token: str) -> np.ndarray | None:
    # Our tokens are lower-case; cased vector sets (e.g. GoogleNews word2vec) may hold only "Paris".
    for candidate in (token, token.capitalize(), token.upper()):
        index = vectors.key_to_index.get(candidate)
        if index is not None:
            return vectors.vectors[index]
    return None


def build_embedding_matrix(
    vocabulary: Vocabulary, vectors: KeyedVectors, seed: int = 0
) -> tuple[np.ndarray, Coverage]:
    """Rows in vocabulary order. Words without a vector get random rows with the vectors' spread,
    so they start on the same scale; padding stays zero."""
    dim = vectors.vector_size
    rng = np.random.default_rng(seed)
    scale = float(vectors.vectors.std()) or 0.1
    matrix = rng.normal(0.0, scale, size=(len(vocabulary), dim)).astype(np.float32)
    matrix[PAD_ID] = 0.0
    covered = np.zeros(len(vocabulary), dtype=bool)
    for index, token in enumerate(vocabulary.tokens[2:], start=2):
        vector = _lookup(vectors, token)
        if vector is not None:
            matrix[index] = vector
            covered[index] = True
    return matrix, coverage_of(vocabulary, covered)


def coverage_of(vocabulary: Vocabulary, covered: np.ndarray) -> Coverage:
    counts = vocabulary.counts
    covered_tokens = sum(
        counts.get(token, 0) for token, hit in zip(vocabulary.tokens, covered, strict=True) if hit
    )
    return Coverage(
        vocabulary_words=len(vocabulary) - 2,
        covered_words=int(covered[2:].sum()),
        corpus_tokens=vocabulary.total_tokens,
        covered_tokens=int(covered_tokens),
    )


def vectors_coverage(vocabulary: Vocabulary, vectors: KeyedVectors) -> Coverage:
    covered = np.array([index >= 2 and _lookup(vectors, token) is not None
                        for index, token in enumerate(vocabulary.tokens)])  # fmt: skip
    return coverage_of(vocabulary, covered)


# ----------------------------------------------------------------------------------------- commands
def _corpus_for(data: str | None, seed: int, use_unsup: bool = True) -> PreparedData:
    from imdb_sentiment.config import DataConfig
    from imdb_sentiment.data import load_data

    return load_data(DataConfig(path=data, use_unsup=use_unsup, seed=seed))


def train_embeddings_command(
    data: str | None = None,
    dim: int = 200,
    window: int = 5,
    min_count: int = 3,
    epochs: int = 5,
    workers: int = 2,
    seed: int = 42,
    cache_root: Path | None = None,
) -> dict[str, object]:
    """Train (or find cached) word2vec on the train split + unlabeled texts of a dataset, exactly
    as a word model with ``embeddings: word2vec`` and the same settings would, and report coverage
    of the training vocabulary. ``seed`` is the ``data.seed`` that carves the validation split (kept out of the corpus)."""
    prepared = _corpus_for(data, seed)
    texts = prepared.train.texts + (prepared.unsup.texts if prepared.unsup is not None else [])
    settings = Word2VecSettings(window=window, min_count=min_count, epochs=epochs, workers=workers)
    trained = train_or_load_word2vec(texts, dim, settings, cache_root)
    vocabulary = Vocabulary.build((tokenize(text) for text in prepared.train.texts), min_freq=2)
    coverage = vectors_coverage(vocabulary, trained.vectors)
    return {
        "path": str(trained.path),
        "vocab_size": len(trained.vectors),
        "dim": trained.vectors.vector_size,
        "seconds": round(trained.seconds, 1),
        "from_cache": trained.from_cache,
        "corpus_texts": len(texts),
        "coverage": coverage.as_dict(),
    }


def coverage_command(
    vectors_path: str, data: str | None = None, fmt: VectorFormat = "auto", min_freq: int = 2, seed: int = 42
) -> dict[str, object]:
    """Coverage of a dataset's training vocabulary (min_freq) by a vectors file."""
    vectors = load_vectors(vectors_path, fmt)
    prepared = _corpus_for(data, seed, use_unsup=False)
    vocabulary = Vocabulary.build((tokenize(text) for text in prepared.train.texts), min_freq=min_freq)
    return {
        "vectors": str(vectors_path),
        "vectors_words": len(vectors),
        "dim": vectors.vector_size,
        "coverage": vectors_coverage(vocabulary, vectors).as_dict(),
    }
