"""``doc2vec``: document vectors trained to predict the review's own word n-grams, then a logistic regression.

PV-DBOW (Le & Mikolov 2014) over word uni- and bi-grams is Li et al.'s DV-ngram (2016): each review's
vector is trained, with negative sampling, to predict the n-grams it contains, on the training reviews and
the unlabelled ones (never validation or test: this is an inductive model). A review the training never
saw gets its vector by inference, the same objective with the n-gram weights frozen. gensim's Doc2Vec does
both; this module adds the classifier and a pickle-free save.

The training and the inference (a shuffled corpus, vectors independent of the process, no review left
untrained) are :mod:`imdb_sentiment.text.doc_vectors`. The classifier is fitted on the training reviews'
trained vectors and used on inferred ones (``classifier_features: trained``), or fitted on inferred vectors
of the training reviews too (``inferred``: one kind of vector throughout, one more inference pass).

With ``nb_ngrams`` the classifier also reads NBSVM's NB-weighted binary bag of n-grams (models/linear.py's
vectorizer and ratio), the standardised vectors scaled by ``vector_weight`` beside it: one linear model over
both, as Mesnil et al. (2014) and Thongtan & Phienthrakul (2019) combine them. Measured on IMDB (1-3 gram
bag, C 0.1, weight 1.0 as validation chose): 92.02% on the test set, against 91.63% for NBSVM alone
(README, "cpu-best", has the other weights and a stacker of the two).

Saved without pickle (gensim's own ``save`` is a pickle): ``doc2vec.json`` (format and settings),
``ngrams.json`` (the n-gram vocabulary and its counts, which negative sampling and down-sampling read),
``output.npy`` (the n-gram output weights, (V, dim) float32) and ``coef.npy``, ``intercept.npy``,
``classes.npy``; with the bag, ``bag.json`` (n-gram -> column) and ``nb_ratio.npy``. Loading rebuilds a
gensim model from the counts and sets the weights.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import read_json, write_json_atomic, write_text_atomic
from imdb_sentiment.models.base import (
    Capabilities,
    FitContext,
    ModelParams,
    SentimentModel,
    load_array,
    load_classes,
    save_arrays,
    saved_model_error,
)
from imdb_sentiment.models.linear import NBSVM, NBSVMParams, restore_columns, save_columns
from imdb_sentiment.models.nb_ratio import NBRatioScaler
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.text.doc_vectors import EmptyVocabularyError, infer_vector, rebuild_pv_dbow, train_pv_dbow
from imdb_sentiment.text.vocabulary import tokenize

if TYPE_CHECKING:
    from gensim.models.doc2vec import Doc2Vec

logger = logging.getLogger("imdb_sentiment.models.doc2vec")

FORMAT = "imdb-sentiment-doc2vec-1"
MAX_WEIGHT = 1e4  # trained output weights and vector scales are far below; larger ones are damage
SETTINGS = ("vector_size", "ngram_max", "negative", "sample", "alpha", "min_alpha", "infer_epochs")


class DocVectorParams(ModelParams):
    vector_size: int = Field(100, ge=8, le=1000, description="Size of each review's vector.")
    ngram_max: int = Field(2, ge=1, le=3, description="Longest word n-gram the vector predicts.")
    epochs: int = Field(10, ge=1, le=200, description="Passes over the corpus.")
    infer_epochs: int | None = Field(
        None, ge=1, le=1000, description="Inference passes per review (null: epochs)."
    )
    negative: int = Field(5, ge=1, le=50, description="Negative samples per predicted n-gram.")
    min_count: int = Field(2, ge=1, description="Ignore n-grams seen fewer times in the corpus.")
    max_vocabulary: int | None = Field(
        300_000, ge=1000, description="Keep the most frequent n-grams only (the saved output layer's rows)."
    )
    sample: float = Field(1e-4, ge=0.0, lt=1.0, description="Down-sampling of frequent n-grams.")
    alpha: float = Field(0.025, gt=0.0, lt=1.0, description="Initial learning rate (gensim's).")
    min_alpha: float = Field(0.0001, gt=0.0, lt=1.0, description="Final learning rate.")
    use_unlabelled: bool = Field(True, description="Train the vectors on the unlabelled reviews too.")
    classifier_features: Literal["trained", "inferred"] = Field(
        "trained", description="Fit the classifier on the training reviews' trained or inferred vectors."
    )
    nb_ngrams: int | None = Field(
        None, ge=1, le=5,
        description="Also NBSVM's NB-weighted binary bag of word 1..n-grams, beside the vectors in one "
        "classifier (two classes); null: the vectors only.",
    )  # fmt: skip
    nb_max_features: int | None = Field(800_000, ge=1000, description="With nb_ngrams: the most frequent n-grams.")
    nb_alpha: float = Field(1.0, gt=0.0, description="With nb_ngrams: Laplace smoothing of the NB count ratio.")
    vector_weight: float = Field(
        1.0, gt=0.0, description="With nb_ngrams: the vectors' scale beside the bag (standardised, times this)."
    )
    C: float = Field(1.0, gt=0.0, description="Inverse regularisation of the logistic regression.")
    C_grid: list[float] = Field(
        default_factory=list, description="If set, pick C on the validation split from these values."
    )
    max_iter: int = Field(2000, ge=10)


@register_model("doc2vec")
class DocVectorClassifier(SentimentModel):
    """PV-DBOW document vectors over word n-grams (DV-ngram) + logistic regression, optionally beside
    NBSVM's NB-weighted bag of n-grams."""

    Params = DocVectorParams
    params: DocVectorParams
    capabilities = Capabilities(kind="gensim + scikit-learn")
    description = "Doc2Vec PV-DBOW vectors predicting word 1-2 grams (Li et al. 2016) [+ NB bag of n-grams] + LR."

    def __init__(self, params: DocVectorParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.threads = max(1, len(os.sched_getaffinity(0)))
        self.doc2vec_: Doc2Vec | None = None
        self.classifier_: LogisticRegression | None = None
        self.bag_: Pipeline | None = None  # vectorizer + NB ratio scaler, with nb_ngrams
        self.vector_scale_ = 1.0
        self.missed_reviews_ = 0  # training reviews gensim's workers never visited (re-inferred)

    def check_classes(self, classes: LabelSpace) -> None:
        if self.params.nb_ngrams is not None and classes.size != 2:
            raise UserError(
                f"model.params.nb_ngrams: the NB-weighted bag needs two classes, and this data has {classes.size}; "
                "set it to null (the vectors alone handle any number of classes)."
            )

    # ------------------------------------------------------------------------------------------ fit
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> DocVectorClassifier:
        self.learn_classes(train)
        self.check_classes(self.classes)
        p = self.params
        self.threads = context.training.threads or self.threads
        unlabelled = context.unsup.texts if p.use_unlabelled and context.unsup is not None else []
        texts = train.texts + unlabelled
        started = time.perf_counter()
        model, line_of = self._train_vectors(texts, context.seed)
        train_seconds = time.perf_counter() - started
        self.doc2vec_ = model
        started = time.perf_counter()
        if p.classifier_features == "trained":
            train_vectors = model.dv.vectors[line_of[: len(train)]]
        else:
            train_vectors = self.vectors(train.texts)
        valid_vectors = self.vectors(valid.texts)
        infer_seconds = time.perf_counter() - started
        if p.nb_ngrams is not None:
            self.vector_scale_ = p.vector_weight / max(float(train_vectors.std()), 1e-12)
            vectorizer = NBSVM(self._bag_params()).vectorizer()
            counts = vectorizer.fit_transform(train.texts)
            self.bag_ = Pipeline([("vectorizer", vectorizer),
                                  ("nb_ratio", NBRatioScaler(p.nb_alpha).fit(counts, train.labels))])  # fmt: skip
        train_x = self._features(train.texts, train_vectors)
        valid_x = self._features(valid.texts, valid_vectors)

        history, best = [], (-1.0, p.C, None)
        for C in p.C_grid or [p.C]:
            classifier = self._classifier(C, context.seed).fit(train_x, train.labels)
            accuracy = float((classifier.predict(valid_x) == valid.labels).mean())
            history.append({"C": C, "valid_accuracy": accuracy})
            if accuracy > best[0]:
                best = (accuracy, C, classifier)
        valid_accuracy, chosen_C, self.classifier_ = best
        context.history.extend(history)
        context.extra_metrics.update(
            {"chosen_C": chosen_C, "valid_accuracy": valid_accuracy, "ngram_vocabulary": len(model.wv),
             "corpus_reviews": len(texts), "untrained_reviews_inferred": self.missed_reviews_,
             "doc2vec_seconds": round(train_seconds, 1),
             "inference_seconds": round(infer_seconds, 1)}
        )  # fmt: skip
        logger.info("doc2vec: vectors in %.0fs, %d n-grams kept; validation %.4f (C=%g)",
                    train_seconds, len(model.wv), valid_accuracy, chosen_C)  # fmt: skip
        return self

    def _train_vectors(self, texts: list[str], seed: int) -> tuple[Doc2Vec, np.ndarray]:
        p = self.params
        logger.info("doc2vec: %d reviews, %d-grams, %d epochs on %d threads",
                    len(texts), p.ngram_max, p.epochs, self.threads)  # fmt: skip
        try:
            model, line_of, self.missed_reviews_ = train_pv_dbow(
                texts, p.ngram_max, seed, self.threads, min_count=p.min_count, max_final_vocab=p.max_vocabulary,
                **self._gensim_settings(),
            )  # fmt: skip
        except EmptyVocabularyError as exc:
            raise UserError(f"model.params.min_count: {exc}; lower min_count or give more reviews.") from None
        return model, line_of

    def _gensim_settings(self) -> dict[str, Any]:
        """The Doc2Vec arguments that training and a rebuilt model share."""
        p = self.params
        return {"vector_size": p.vector_size, "negative": p.negative, "sample": p.sample, "alpha": p.alpha,
                "min_alpha": p.min_alpha, "epochs": p.epochs}  # fmt: skip

    def _bag_params(self) -> NBSVMParams:
        p = self.params
        return NBSVMParams(ngram_max=p.nb_ngrams or 1, max_features=p.nb_max_features, nb_alpha=p.nb_alpha)

    def _classifier(self, C: float, seed: int) -> LogisticRegression:
        if self.bag_ is not None:  # features >> examples: liblinear's dual form, as NBSVM
            return LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=self.params.max_iter,
                                      random_state=seed)  # fmt: skip
        return LogisticRegression(C=C, max_iter=self.params.max_iter)

    def _features(self, texts: list[str], vectors: np.ndarray) -> np.ndarray | sparse.csr_matrix:
        """The classifier's input: the vectors, after the NB-weighted bag when there is one."""
        if self.bag_ is None:
            return vectors
        return sparse.hstack([self.bag_.transform(texts), sparse.csr_matrix(vectors * self.vector_scale_)]).tocsr()

    # ------------------------------------------------------------------------------------ inference
    def vectors(self, texts: list[str]) -> np.ndarray:
        """Inferred vectors, (n, vector_size), each a function of the review's n-grams alone."""
        assert self.doc2vec_ is not None, "fit or load the model first"
        p = self.params
        if not texts:
            return np.zeros((0, p.vector_size), dtype=np.float32)
        infer = functools.partial(
            infer_vector, self.doc2vec_, ngram_max=p.ngram_max, epochs=p.infer_epochs or p.epochs
        )
        if self.threads == 1 or len(texts) == 1:
            return np.stack([infer(text) for text in texts])
        with ThreadPoolExecutor(self.threads) as pool:  # gensim's inner loop releases the GIL
            return np.stack(list(pool.map(infer, texts)))

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.num_classes))
        assert self.classifier_ is not None, "fit or load the model first"
        return self.classifier_.predict_proba(self._features(texts, self.vectors(texts))).astype(np.float64)

    def known_token_share(self, texts: list[str]) -> np.ndarray:
        """Share of each text's word tokens that are unigrams of the vectors' n-gram vocabulary (a longer
        n-gram is known only if its words are)."""
        assert self.doc2vec_ is not None, "fit or load the model first"
        vocabulary = self.doc2vec_.wv.key_to_index
        shares = np.zeros(len(texts))
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            if tokens:
                shares[row] = sum(token in vocabulary for token in tokens) / len(tokens)
        return shares

    def num_parameters(self) -> int:
        assert self.doc2vec_ is not None and self.classifier_ is not None, "fit or load the model first"
        return int(self.doc2vec_.syn1neg.size + self.classifier_.coef_.size + self.classifier_.intercept_.size)

    # ---------------------------------------------------------------------------------- save / load
    def _settings(self) -> dict[str, Any]:
        p = self.params
        return {name: getattr(p, name) for name in SETTINGS} | {"infer_epochs": p.infer_epochs or p.epochs}

    def save_weights(self, directory: Path) -> None:
        assert self.doc2vec_ is not None and self.classifier_ is not None, "fit or load the model first"
        model, classifier = self.doc2vec_, self.classifier_
        counts = [int(model.wv.get_vecattr(key, "count")) for key in model.wv.index_to_key]
        vocabulary = {"ngrams": model.wv.index_to_key, "counts": counts}
        write_text_atomic(directory / "ngrams.json", json.dumps(vocabulary, separators=(",", ":")))
        arrays = {"output": model.syn1neg, "coef": classifier.coef_, "intercept": classifier.intercept_,
                  "classes": classifier.classes_}  # fmt: skip
        if self.bag_ is not None:
            arrays["nb_ratio"] = self.bag_.named_steps["nb_ratio"].ratio_
            save_columns(self.bag_.named_steps["vectorizer"], directory / "bag.json")
        save_arrays(directory, arrays)
        write_json_atomic(directory / "doc2vec.json",
                          {"format": FORMAT, "settings": self._settings(), "vector_scale": self.vector_scale_})  # fmt: skip

    def load_weights(self, directory: Path) -> None:
        meta = read_json(directory / "doc2vec.json", "the saved model is damaged: train it again")
        if meta.get("format") != FORMAT:
            raise saved_model_error(directory, f"doc2vec.json is not in this version's format ({FORMAT})")
        if meta.get("settings") != self._settings():
            raise saved_model_error(directory, "the settings in doc2vec.json do not match model.json")
        scale = meta.get("vector_scale")
        if type(scale) not in (int, float) or not 0 < scale < MAX_WEIGHT:
            raise saved_model_error(directory, "doc2vec.json's vector_scale is not a positive number of sane size")
        p = self.params
        self.doc2vec_ = self._load_vectors_model(directory)
        self.bag_, self.vector_scale_ = None, float(scale)
        width = p.vector_size
        if p.nb_ngrams is not None:
            self.bag_ = self._load_bag(directory)
            width += len(self.bag_.named_steps["vectorizer"].vocabulary_)
        rows = 1 if self.num_classes == 2 else self.num_classes
        coef = load_array(directory, "coef", (rows, width))
        intercept = load_array(directory, "intercept", (rows,))
        classes = load_classes(directory, self.num_classes)
        classifier = self._classifier(p.C, seed=0)  # loaded weights: never refitted
        classifier.classes_, classifier.coef_, classifier.intercept_ = classes, coef, intercept
        classifier.n_features_in_ = width
        self.classifier_ = classifier

    def _load_vectors_model(self, directory: Path) -> Doc2Vec:
        vocabulary = read_json(directory / "ngrams.json", "the saved model is damaged: train it again")
        grams, counts = vocabulary.get("ngrams"), vocabulary.get("counts")
        if not (isinstance(grams, list) and isinstance(counts, list) and len(grams) == len(counts) and grams
                and all(type(g) is str for g in grams) and all(type(c) is int and c > 0 for c in counts)
                and len(set(grams)) == len(grams)):  # fmt: skip
            raise saved_model_error(
                directory, "ngrams.json is not a list of distinct n-grams with positive counts"
            )
        p = self.params
        output = load_array(directory, "output", (len(grams), p.vector_size))
        if np.abs(output).max() >= MAX_WEIGHT:  # overflows to NaN inside gensim's compiled loop
            raise saved_model_error(directory, "output.npy holds weights of implausible size")
        return rebuild_pv_dbow(grams, counts, output, **self._gensim_settings())

    def _load_bag(self, directory: Path) -> Pipeline:
        vectorizer = restore_columns(NBSVM(self._bag_params()).vectorizer(), directory, "bag.json")
        scaler = NBRatioScaler(self.params.nb_alpha)
        scaler.ratio_ = load_array(directory, "nb_ratio", (len(vectorizer.vocabulary_),))
        return Pipeline([("vectorizer", vectorizer), ("nb_ratio", scaler)])
