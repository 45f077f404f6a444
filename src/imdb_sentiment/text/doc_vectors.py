"""PV-DBOW document vectors over word n-grams (DV-ngram: Li et al. 2016) with gensim's Doc2Vec: training,
a process-independent inference, and a model rebuilt from saved counts and weights (models/doc_vectors.py
saves them without pickle; gensim's own ``save`` is a pickle).

- **The corpus is shuffled.** Doc2Vec's learning rate falls linearly through each epoch, so a corpus in
  label order (IMDB's files are) gives positive and negative reviews vectors of visibly different scales,
  which a classifier then reads as the label: measured 96% cross-validated on the training vectors and
  75% on inferred validation ones; shuffled, 90.6% on validation and on the test set (IMDB, 100-d,
  1-2 grams, 10 epochs).
- **Inference is deterministic per review** (:func:`infer_vector`). gensim seeds a review's starting vector
  with Python's per-process ``hash()`` and draws negative samples from the model's one random state, so a
  vector depended on the process and on what was inferred before it. Here both are seeded by the review's
  n-grams: a vector never depends on the process, the batch or the thread (gensim's inner loop releases
  the GIL, so callers infer on several threads).
- **Every training review is trained.** With several workers gensim's ``corpus_file`` mode splits the file
  by bytes but stops each worker by words, so a few reviews near the seams are never visited (gensim issue
  #2757: 6 of the 72,495 IMDB reviews with 2 workers, by a simulation of the split); their vectors, still
  the random initial ones, are replaced by inferred ones.
"""

from __future__ import annotations

import copy
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imdb_sentiment.text.vocabulary import tokenize

if TYPE_CHECKING:
    from gensim.models.doc2vec import Doc2Vec

NGRAM_JOINER = "_"  # never inside a token: the tokenizer's words exclude "_" (text/vocabulary.py)


class EmptyVocabularyError(ValueError):
    """No n-gram occurs ``min_count`` times in the corpus."""


def ngrams(text: str, ngram_max: int) -> list[str]:
    """The review's word tokens (the word models' tokenizer) followed by its 2..ngram_max-grams."""
    tokens = tokenize(text)
    grams = list(tokens)
    for n in range(2, ngram_max + 1):
        grams.extend(NGRAM_JOINER.join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def train_pv_dbow(texts: list[str], ngram_max: int, seed: int, workers: int,
                  **settings: float | int | None) -> tuple[Doc2Vec, np.ndarray, int]:  # fmt: skip
    """PV-DBOW on ``texts`` in a seeded shuffled order. ``settings``: gensim's Doc2Vec arguments (vector_size,
    negative, min_count, max_final_vocab, sample, alpha, min_alpha, epochs). Returns the model, each text's
    line (its row of ``model.dv.vectors``) and how many texts no worker visited (inferred instead)."""
    from gensim.models.doc2vec import Doc2Vec

    order = np.random.default_rng(seed).permutation(len(texts))
    # corpus_file mode: gensim reads a whitespace-separated file without the GIL, so training scales with
    # workers; a document's tag is its line number.
    with tempfile.TemporaryDirectory(prefix="imdb-doc2vec-") as folder:
        corpus = Path(folder) / "corpus.txt"
        with open(corpus, "w", encoding="utf-8") as handle:
            for index in order:
                # An empty line would be no document at all and shift every later tag.
                handle.write(" ".join(ngrams(texts[index], ngram_max)) or NGRAM_JOINER)
                handle.write("\n")
        model = Doc2Vec(dm=0, hs=0, workers=workers, seed=seed, **settings)
        model.build_vocab(corpus_file=str(corpus))
        if len(model.wv) == 0:
            raise EmptyVocabularyError(f"no n-gram occurs {model.min_count} times in the {len(texts)} reviews")
        initial = model.dv.vectors.copy()
        model.train(corpus_file=str(corpus), total_examples=model.corpus_count,
                    total_words=model.corpus_total_words, epochs=model.epochs)  # fmt: skip
    line_of = np.empty(len(texts), dtype=np.int64)
    line_of[order] = np.arange(len(texts))
    missed = np.flatnonzero((model.dv.vectors == initial).all(axis=1))
    for line in missed:  # never visited by a worker (module docstring): inferred instead
        model.dv.vectors[line] = infer_vector(model, texts[order[line]], ngram_max, model.epochs)
    return model, line_of, len(missed)


def infer_vector(model: Doc2Vec, text: str, ngram_max: int, epochs: int) -> np.ndarray:
    """gensim's ``Doc2Vec.infer_vector`` for PV-DBOW, seeded by the review alone. gensim seeds the starting
    vector with Python's ``hash()``, which differs between processes (and leaves a review without tokens
    unseeded), and draws negatives from the model's one random state, so the same saved model gave other
    probabilities in every process and batch. Here both come from a crc32 of the review's n-grams."""
    from gensim.models.doc2vec_inner import train_document_dbow

    grams = ngrams(text, ngram_max)
    seed = zlib.crc32(" ".join(grams).encode("utf-8"))
    size = model.dv.vector_size
    # gensim's initialisation (keyedvectors.pseudorandom_weak_vector) with this seed.
    vector = ((np.random.Generator(np.random.SFC64(seed)).random(size) - 0.5) / size).astype(np.float32)
    vector = vector.reshape(1, size)
    seeded = copy.copy(model)  # shares every array (inference writes only ``vector``); its own random state
    seeded.random = np.random.RandomState(seed)
    work, lock = np.zeros(model.layer1_size, dtype=np.float32), np.ones(1, dtype=np.float32)
    alpha, delta = model.alpha, (model.alpha - model.min_alpha) / max(epochs - 1, 1)
    for _ in range(epochs):
        train_document_dbow(seeded, grams, [0], alpha, work, learn_words=False, learn_hidden=False,
                            doctag_vectors=vector, doctags_lockf=lock)  # fmt: skip
        alpha -= delta
    return vector[0]


def rebuild_pv_dbow(grams: list[str], counts: list[int], output: np.ndarray,
                    **settings: float | int | None) -> Doc2Vec:  # fmt: skip
    """A model that infers exactly like the trained one, from its n-grams (in its order), their counts and
    its output weights (``syn1neg``)."""
    from gensim.models.doc2vec import Doc2Vec

    model = Doc2Vec(dm=0, hs=0, min_count=1, workers=1, **settings)
    # The counts rebuild gensim's down-sampling thresholds; the saved order is then restored, since gensim's
    # sort by count may order ties differently and the negative-sampling table (rebuilt below) maps a draw
    # to an n-gram by position.
    model.build_vocab_from_freq(dict(zip(grams, counts, strict=True)), corpus_count=1)
    vectors = model.wv
    position = np.array([vectors.key_to_index[gram] for gram in grams])
    vectors.index_to_key = list(grams)
    vectors.key_to_index = {gram: index for index, gram in enumerate(grams)}
    vectors.expandos = {name: values[position] for name, values in vectors.expandos.items()}
    vectors.vectors = vectors.vectors[position]
    model.make_cum_table()
    model.syn1neg = np.ascontiguousarray(output, dtype=np.float32)
    return model
