"""``known_token_share``: how much of a text a fitted model knows, for every model family.

Texts in a script or of symbols the tiny training reviews never had (emoji, Russian, Japanese) must
come out at 0, so ``predict`` can say their predictions are only the model's prior; English made of
the training words comes out high. Each family is fitted once on tiny reviews and reloaded from disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_reviews

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.serving.predictor import unknown_texts_warning

EMOJI, RUSSIAN, JAPANESE = "😀🎉🔥 👍", "Отличный фильм, всем советую!", "素晴らしい映画でした"
ENGLISH = "the movie was great and the story wonderful"
WORD = {"embeddings": "random", "embedding_dim": 16, "max_length": 24, "min_freq": 1}
TINY = {
    "tfidf-lr": {"min_df": 1},
    "nbsvm": {"min_df": 1, "max_features": None},
    "doc2vec": {"vector_size": 8, "epochs": 2, "min_count": 1},
    "cnn": {**WORD, "num_filters": 8},
    "lstm": {**WORD, "hidden_size": 8},
    # A random 1-layer BERT with MiniLM's WordPiece vocabulary, and one with a vocabulary of its own.
    "hf": {"from_scratch": True, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
           "max_length": 32},
    "bert-scratch": {"vocab": "train", "vocab_size": 200, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                     "intermediate_size": 64, "max_length": 32},
}  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """name -> (fitted model, the same model saved and loaded back), made on first use."""
    cache: dict[str, tuple[SentimentModel, SentimentModel]] = {}

    def fit(name: str) -> tuple[SentimentModel, SentimentModel]:
        if name not in cache:
            torch.manual_seed(0)
            workdir = Path(tmp_path_factory.mktemp(name))
            model = get_model_class(name)(TINY[name])
            training = TrainingConfig(epochs=1, batch_size=8, learning_rate=5e-3, max_steps=2, threads=1)
            context = FitContext(training=training, run_dir=workdir / "run", show_progress=False)
            model.fit(tiny_reviews(48, 0), tiny_reviews(8, 1), context)
            model.save(workdir / "model")
            cache[name] = (model, SentimentModel.load(workdir / "model"))
        return cache[name]

    return fit


@pytest.mark.parametrize("name", ["tfidf-lr", "nbsvm", "cnn", "lstm"])
def test_unseen_scripts_are_unknown_and_training_words_known(fitted, name: str) -> None:
    model, loaded = fitted(name)
    texts = [ENGLISH, EMOJI, RUSSIAN, JAPANESE, "great zzzqqq"]
    shares = model.known_token_share(texts)
    assert shares is not None and shares.shape == (5,) and shares.dtype.kind == "f"
    assert shares[0] == 1.0 and list(shares[1:4]) == [0.0, 0.0, 0.0]
    assert shares[4] == pytest.approx(0.5)  # one of two words known: it is a share, not a flag
    np.testing.assert_array_equal(loaded.known_token_share(texts), shares)
    assert unknown_texts_warning(shares) == (
        "3 text(s) contain no word the model knows; their predictions are the model's prior."
    )


@pytest.mark.parametrize("name", ["hf", "bert-scratch"])
def test_wordpiece_models_count_unk_tokens(fitted, name: str) -> None:
    model, loaded = fitted(name)
    texts = [ENGLISH, EMOJI]
    shares = model.known_token_share(texts)
    assert shares is not None
    assert shares[0] > 0.5 and shares[1] == 0.0
    np.testing.assert_array_equal(loaded.known_token_share(texts), shares)


def test_wordpiece_trained_on_english_does_not_know_other_scripts(fitted) -> None:
    # MiniLM's vocabulary spells Cyrillic (and some kana) letter by letter, so only a vocabulary
    # trained on the English reviews makes these unknown.
    model, _ = fitted("bert-scratch")
    assert list(model.known_token_share([RUSSIAN, JAPANESE])) == [0.0, 0.0]


def test_half_known_text_with_a_wordpiece_vocabulary(fitted) -> None:
    model, _ = fitted("hf")
    unk = model.encoder.tokenizer.unk_token_id
    ids = model.encoder.bodies(["great 😀"])[0]
    assert ids.count(unk) == 1 and model.known_token_share(["great 😀"])[0] == pytest.approx(1 - 1 / len(ids))


def test_byte_level_bpe_cannot_tell() -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(
        tiny_reviews(40, 0).texts, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend._tokenizer, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")  # fmt: skip
    encoder = HFTokenizerEncoder(tokenizer, max_length=32)
    assert tokenizer.unk_token_id is not None and encoder.unknown_token_id() is None
    assert encoder.known_token_share([EMOJI]) is None


def test_models_that_cannot_tell_return_none() -> None:
    class Constant(SentimentModel):
        def fit(self, train, valid, context):
            return self

        def predict_proba(self, texts, batch_size=128):
            return np.tile([0.5, 0.5], (len(texts), 1))

        def num_parameters(self):
            return 0

        def save_weights(self, directory):
            pass

        def load_weights(self, directory):
            pass

    assert Constant().known_token_share(["anything"]) is None
    assert unknown_texts_warning(None) is None and unknown_texts_warning(np.array([0.2, 1.0])) is None
