"""Linear baselines on n-gram features (scikit-learn).

- ``tfidf-lr``: word uni+bigram TF-IDF with logistic regression (liblinear for two classes; for three
  or more, scikit-learn's multinomial lbfgs).
- ``nbsvm``: NBSVM (Wang & Manning, 2012): binarized uni/bi/tri-gram counts scaled by the naive-Bayes
  log-count ratio, then a linear classifier. For three or more classes, one-vs-rest as Wang & Manning
  extend it: one ratio vector and one binary classifier per class (class k against the rest).
  scikit-learn has no NB-ratio transformer, so that scaling step is written (models/nb_ratio.py); the
  one-vs-rest fitting is scikit-learn's OneVsRestClassifier.

Saved without pickle: ``linear.json`` (format, vectorizer settings, classifier settings),
``vocabulary.json`` (n-gram -> column) and plain NumPy arrays (``idf.npy`` when TF-IDF weighting is
used, ``nb_ratio.npy`` for NBSVM, ``coef.npy``, ``intercept.npy``, ``classes.npy``) read with
``allow_pickle=False``. Two classes: one row (``coef`` (1, n), ``intercept`` (1,), ``nb_ratio`` (n,)),
exactly as before classes were recorded; K classes: one row per class (``nb_ratio`` (K, n) too).
Loading rebuilds the scikit-learn pipeline from the model's own settings, so nothing in a model folder
can run code. Folders from older versions (``pipeline.joblib``, a pickle)
are refused, never unpickled.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from imdb_sentiment.data.dataset import TextDataset
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
from imdb_sentiment.models.nb_ratio import NBOneVsRest, NBRatioScaler
from imdb_sentiment.models.registry import register_model

FORMAT = "imdb-sentiment-linear-npy-1"
LEGACY_PICKLE = "pipeline.joblib"
# Vectorizer settings recorded in linear.json; on load they must equal those rebuilt from model.json.
VECTORIZER_SETTINGS = (
    "lowercase", "token_pattern", "ngram_range", "min_df", "max_df", "max_features", "sublinear_tf",
    "binary", "norm", "use_idf", "smooth_idf", "analyzer", "strip_accents", "stop_words",
)  # fmt: skip

# Keeps punctuation such as "!" and ":)" as tokens: they carry sentiment (Wang & Manning do the same).
TOKEN_PATTERN = r"[a-z0-9]+(?:'[a-z]+)?|[!?]+|:\)|:\("


class LinearParams(ModelParams):
    ngram_max: int = Field(2, ge=1, le=5, description="Longest word n-gram.")
    token_pattern: str = Field(TOKEN_PATTERN, description="Regex for one token (lower-cased text).")
    min_df: int = Field(2, ge=1, description="Drop n-grams seen in fewer documents.")
    max_features: int | None = Field(None, ge=1000, description="Keep the most frequent n-grams only.")
    sublinear_tf: bool = True
    binary: bool = False
    norm: Literal["l1", "l2"] | None = "l2"
    C: float = Field(8.0, gt=0.0, description="Inverse regularisation strength.")
    C_grid: list[float] = Field(
        default_factory=list, description="If set, pick C on the validation split from these values."
    )
    refit_on_train_and_valid: bool = Field(
        True, description="After choosing C on validation, refit on train+valid (test stays unseen)."
    )
    dual: bool = Field(False, description="liblinear's dual form: faster when features >> examples.")
    max_iter: int = Field(1000, ge=10)


class NBSVMParams(LinearParams):
    ngram_max: int = Field(3, ge=1, le=5)
    # Word characters plus ! and ?: keeps "don't" as "don", "t" like Wang & Manning's tokens.
    token_pattern: str = r"(?u)\b\w+\b|[!?]"
    min_df: int = 1
    max_features: int | None = Field(800_000, ge=1000)
    binary: bool = True
    sublinear_tf: bool = False
    norm: Literal["l1", "l2"] | None = None
    use_idf: bool = False
    nb_alpha: float = Field(1.0, gt=0.0, description="Laplace smoothing of the NB count ratio.")
    C: float = 0.1
    dual: bool = True


class LinearModel(SentimentModel):
    """Shared fit/predict/save for the n-gram linear models."""

    params: LinearParams
    capabilities = Capabilities(kind="scikit-learn", explanation="linear")

    def vectorizer(self) -> TfidfVectorizer:
        """The (unfitted) n-gram vectorizer."""
        raise NotImplementedError

    def fit_head(
        self, features: sparse.csr_matrix, labels: np.ndarray, C: float, seed: int, start: list | None = None
    ) -> list[tuple[str, Any]]:
        """The fitted steps after the vectorizer (any supervised scaling, then the classifier). ``start``:
        a head fitted on part of these rows (same columns), which an iterative solver may start from."""
        classifier = self._classifier(C, seed)
        if start is not None and self.num_classes > 2:
            # lbfgs from the train-only weights: the refit on train + valid then needs a fifth of the
            # iterations (measured 18 against 90 on 4,000 rating reviews). liblinear (two classes) has no
            # warm start, and the binary fit stays exactly as it was.
            previous = start[-1][1]
            classifier.set_params(warm_start=True)
            classifier.coef_, classifier.intercept_ = previous.coef_.copy(), previous.intercept_.copy()
        return [("classifier", classifier.fit(features, labels))]

    def restore_head(self, directory: Path, C: float, coef: np.ndarray, intercept: np.ndarray,
                     classes: np.ndarray) -> list[tuple[str, Any]]:  # fmt: skip
        """:meth:`fit_head`'s steps again, from saved arrays."""
        classifier = self._classifier(C, seed=0)  # loaded weights: never refitted
        classifier.classes_, classifier.coef_, classifier.intercept_ = classes, coef, intercept
        classifier.n_features_in_ = coef.shape[1]
        return [("classifier", classifier)]

    def _vectorizer(self, use_idf: bool) -> TfidfVectorizer:
        p = self.params
        return TfidfVectorizer(
            lowercase=True,
            token_pattern=p.token_pattern,
            ngram_range=(1, p.ngram_max),
            min_df=p.min_df,
            max_features=p.max_features,
            sublinear_tf=p.sublinear_tf,
            binary=p.binary,
            norm=p.norm,
            use_idf=use_idf,
            dtype=np.float32,
        )

    def _binary_classifier(self, C: float, seed: int) -> LogisticRegression:
        # random_state: liblinear shuffles with it; unset, it draws from numpy's global RNG, so the same
        # seed gave different weights depending on what ran before in the process.
        return LogisticRegression(C=C, max_iter=self.params.max_iter, solver="liblinear", dual=self.params.dual,
                                  random_state=seed)  # fmt: skip

    def _classifier(self, C: float, seed: int) -> LogisticRegression:
        """liblinear for two classes (as ever); it has no multinomial loss, so K > 2 classes use lbfgs,
        scikit-learn's default, which minimises the multinomial (softmax) loss."""
        if self.num_classes == 2:
            return self._binary_classifier(C, seed)
        return LogisticRegression(C=C, max_iter=self.params.max_iter, solver="lbfgs")

    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> LinearModel:
        self.learn_classes(train)
        started = time.perf_counter()
        vectorizer = self.vectorizer()
        # Vectorise once. With refitting, the (unsupervised) vocabulary is built from train+valid
        # texts; labels of the validation split are used only for choosing C, as intended.
        refit = self.params.refit_on_train_and_valid
        all_texts = train.texts + valid.texts
        all_labels = np.concatenate([train.labels, valid.labels])
        if refit:
            all_x = vectorizer.fit_transform(all_texts)
            train_x, valid_x = all_x[: len(train)], all_x[len(train) :]
        else:
            train_x = vectorizer.fit_transform(train.texts)
            valid_x = vectorizer.transform(valid.texts)
        vectorize_seconds = time.perf_counter() - started

        history, best = [], (-1.0, self.params.C, [])
        for C in self.params.C_grid or [self.params.C]:
            head = self.fit_head(train_x, train.labels, C, context.seed)
            accuracy = float((Pipeline(head).predict(valid_x) == valid.labels).mean())
            history.append({"C": C, "valid_accuracy": accuracy})
            if accuracy > best[0]:
                best = (accuracy, C, head)
        valid_accuracy, best_C, head = best
        if refit:
            head = self.fit_head(all_x, all_labels, best_C, context.seed, start=head)
        self.pipeline_ = Pipeline([("vectorizer", vectorizer), *head])
        context.history.extend(history)
        context.extra_metrics.update(
            {"chosen_C": best_C, "valid_accuracy": valid_accuracy, "num_features": len(vectorizer.vocabulary_),
             "vectorize_seconds": vectorize_seconds, "refit_on_train_and_valid": refit}
        )  # fmt: skip
        return self

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        if not texts:  # scikit-learn refuses an empty batch; no texts, no rows
            return np.zeros((0, self.num_classes))
        return self.pipeline_.predict_proba(texts).astype(np.float64)

    def known_token_share(self, texts: list[str]) -> np.ndarray:
        """Share of each text's word tokens (the vectorizer's own lower-casing and token pattern) that
        are unigrams of the fitted vocabulary. Unigrams only: a longer n-gram is known only if its
        words are, so the words say whether the model saw anything it knows; the share of known
        bigrams would mostly measure how unusual the phrasing is."""
        vectorizer = self.pipeline_.steps[0][1]
        preprocess, tokenize = vectorizer.build_preprocessor(), vectorizer.build_tokenizer()
        vocabulary = vectorizer.vocabulary_
        shares = np.zeros(len(texts))
        for row, text in enumerate(texts):
            tokens = tokenize(preprocess(text))
            if tokens:
                shares[row] = sum(token in vocabulary for token in tokens) / len(tokens)
        return shares

    def num_parameters(self) -> int:
        classifier = self.pipeline_.steps[-1][1]
        return int(classifier.coef_.size + classifier.intercept_.size)

    def save_weights(self, directory: Path) -> None:
        vectorizer, *scalers, classifier = (step for _, step in self.pipeline_.steps)
        arrays: dict[str, np.ndarray] = {}
        if vectorizer.use_idf:
            arrays["idf"] = vectorizer.idf_
        for scaler in scalers:
            if not isinstance(scaler, NBRatioScaler):
                raise NotImplementedError(f"cannot save pipeline step {type(scaler).__name__}")
            arrays["nb_ratio"] = scaler.ratio_
        coef = classifier.coef_
        if isinstance(classifier, NBOneVsRest):  # the K ratio vectors and the weights on scaled features
            arrays["nb_ratio"], coef = classifier.ratios_, classifier.weights_
        arrays.update(coef=coef, intercept=classifier.intercept_, classes=classifier.classes_)
        save_arrays(directory, arrays)
        save_columns(vectorizer, directory / "vocabulary.json")
        write_json_atomic(
            directory / "linear.json",
            {
                "format": FORMAT,
                "vectorizer": _vectorizer_settings(vectorizer),
                "classifier": {"C": float(classifier.C)},
                "arrays": sorted(arrays),
            },
        )

    def load_weights(self, directory: Path) -> None:
        meta_file = directory / "linear.json"
        if not meta_file.is_file():
            if (directory / LEGACY_PICKLE).exists():
                raise UserError(
                    f"The saved model in {directory} cannot be loaded: it was saved in an old unsafe format "
                    f"({LEGACY_PICKLE}, a pickle that could run code when loaded), which is no longer read. "
                    "Retrain it with this version."
                )
            raise saved_model_error(directory, "linear.json is missing")
        meta = read_json(meta_file, "the saved model is damaged: train it again")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise saved_model_error(directory, f"linear.json is not in this version's format ({FORMAT})")
        vectorizer = self.vectorizer()
        if meta.get("vectorizer") != _vectorizer_settings(vectorizer):
            raise saved_model_error(directory, "the vectorizer settings in linear.json do not match model.json")
        # Also sets up the TF-IDF step; the idf weights fitted on its empty document are replaced just below.
        width = len(restore_columns(vectorizer, directory, "vocabulary.json").vocabulary_)
        if vectorizer.use_idf:
            vectorizer.idf_ = load_array(directory, "idf", (width,))
        # One row for two classes (a binary classifier), one per class otherwise; model.json's classes
        # (restored before this) say how many, so arrays of another task are refused here.
        rows = 1 if self.num_classes == 2 else self.num_classes
        classes = load_classes(directory, self.num_classes)
        coef = load_array(directory, "coef", (rows, width))
        intercept = load_array(directory, "intercept", (rows,))
        head = self.restore_head(directory, float(meta["classifier"]["C"]), coef, intercept, classes)
        self.pipeline_ = Pipeline([("vectorizer", vectorizer), *head])


def save_columns(vectorizer: TfidfVectorizer, path: Path) -> None:
    """A fitted vectorizer's vocabulary (n-gram -> column) as compact JSON."""
    # int(): after max_features pruning scikit-learn's columns are NumPy integers.
    columns = {term: int(column) for term, column in vectorizer.vocabulary_.items()}
    write_text_atomic(path, json.dumps(columns, separators=(",", ":")))


def restore_columns(vectorizer: TfidfVectorizer, directory: Path, name: str) -> TfidfVectorizer:
    """``vectorizer`` (unfitted, the saved model's settings) with the vocabulary :func:`save_columns` wrote."""
    columns = read_json(directory / name, "the saved model is damaged: train it again")
    if not all(type(column) is int for column in columns.values()):
        raise saved_model_error(directory, f"{name} is not a mapping of terms to column numbers")
    # A fixed vocabulary: fitting then only validates it (columns 0..n-1, no repeats).
    return vectorizer.set_params(vocabulary=columns).fit([""])


def _vectorizer_settings(vectorizer: TfidfVectorizer) -> dict[str, Any]:
    params = vectorizer.get_params()
    settings = {name: params[name] for name in VECTORIZER_SETTINGS}
    settings["ngram_range"] = list(settings["ngram_range"])
    settings["dtype"] = np.dtype(params["dtype"]).name
    return settings


@register_model("tfidf-lr")
class TfidfLogisticRegression(LinearModel):
    """Word uni+bigram TF-IDF (sublinear tf) and logistic regression."""

    Params = LinearParams
    description = "Word 1-2 gram TF-IDF + logistic regression (scikit-learn)."

    def vectorizer(self) -> TfidfVectorizer:
        return self._vectorizer(use_idf=True)


@register_model("nbsvm")
class NBSVM(LinearModel):
    """Binarized 1-3 grams scaled by NB log-count ratios + logistic regression (Wang & Manning 2012)."""

    Params = NBSVMParams
    params: NBSVMParams
    description = "NB-weighted binary 1-3 grams + linear classifier (Wang & Manning 2012)."

    def vectorizer(self) -> TfidfVectorizer:
        return self._vectorizer(self.params.use_idf)

    def fit_head(
        self, features: sparse.csr_matrix, labels: np.ndarray, C: float, seed: int, start: list | None = None
    ) -> list[tuple[str, Any]]:
        # liblinear starts from zero whatever it is given: ``start`` is not used.
        if self.num_classes > 2:
            one_vs_rest = NBOneVsRest(self._binary_classifier(C, seed), self.params.nb_alpha)
            return [("classifier", one_vs_rest.fit(features, labels))]
        scaler = NBRatioScaler(self.params.nb_alpha).fit(features, labels)
        return [
            ("nb_ratio", scaler),
            ("classifier", self._binary_classifier(C, seed).fit(scaler.transform(features), labels)),
        ]

    def restore_head(self, directory: Path, C: float, coef: np.ndarray, intercept: np.ndarray,
                     classes: np.ndarray) -> list[tuple[str, Any]]:  # fmt: skip
        if self.num_classes > 2:
            ratios = load_array(directory, "nb_ratio", coef.shape)
            classifier = NBOneVsRest(self._binary_classifier(C, seed=0), self.params.nb_alpha)
            return [("classifier", classifier.set_weights(ratios, coef, intercept))]
        scaler = NBRatioScaler(self.params.nb_alpha)
        scaler.ratio_ = load_array(directory, "nb_ratio", (coef.shape[1],))
        return [("nb_ratio", scaler), *super().restore_head(directory, C, coef, intercept, classes)]
