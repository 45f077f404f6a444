"""One contract for every registered model (like scikit-learn's check_estimator).

Each model trains briefly on a tiny in-memory dataset, predicts probabilities, saves, loads and
predicts the same again. A newly registered model must add its tiny settings to TINY_PARAMS.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.registry import available_models, get_model_class

WORD = {"embeddings": "random", "embedding_dim": 16, "max_length": 24, "min_freq": 1}
TINY_PARAMS: dict[str, dict] = {
    "tfidf-lr": {"min_df": 1},
    "nbsvm": {"min_df": 1, "max_features": None},
    "fasttext": WORD,
    "cnn": {**WORD, "num_filters": 8},
    "lstm": {**WORD, "hidden_size": 8},
    "gru": {**WORD, "hidden_size": 8},
    "cnn-lstm": {**WORD, "num_filters": 8, "hidden_size": 8},
    "attention-lstm": {**WORD, "hidden_size": 8},
    "capsule-lstm": {**WORD, "hidden_size": 8},
    "transformer": {**WORD, "num_layers": 1, "num_heads": 2, "feedforward_dim": 32},
    # A random 1-layer BERT with MiniLM's vocabulary: the real loading paths, no download.
    "hf": {
        "from_scratch": True,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
        "max_length": 32,
    },
    "minilm": {"max_length": 32},
    "bert-scratch": {
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
        "max_length": 32,
    },
}
SLOW = {"minilm"}  # loads real weights; still only a few steps


def tiny_dataset(size: int, seed: int) -> TextDataset:
    rng = np.random.default_rng(seed)
    positive, negative = ["great", "wonderful", "excellent", "loved"], ["awful", "boring", "terrible", "hated"]
    filler = ["the", "movie", "plot", "actor", "scene", "was", "and", "a", "film", "story"]
    texts, labels = [], []
    for index in range(size):
        label = index % 2
        cue = positive if label else negative
        words = list(rng.choice(filler, size=int(rng.integers(4, 20)))) + list(rng.choice(cue, size=2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return TextDataset(texts, np.asarray(labels))


def test_every_registered_model_has_tiny_settings() -> None:
    assert set(available_models()) <= set(TINY_PARAMS), "add tiny settings for new models to TINY_PARAMS"


@pytest.mark.parametrize("name", available_models())
def test_model_contract(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    cls = get_model_class(name)
    params = cls.Params.model_validate(TINY_PARAMS[name])
    with pytest.raises(ValueError):
        cls.Params.model_validate({"no_such_setting": 1})
    model = cls(params)
    train, valid, test = tiny_dataset(48, 0), tiny_dataset(16, 1), tiny_dataset(12, 2)
    training = TrainingConfig(epochs=2, batch_size=8, learning_rate=5e-3, max_steps=8, threads=2)
    context = FitContext(training=training, run_dir=tmp_path / "run", show_progress=False)
    assert model.fit(train, valid, context) is model

    probabilities = model.predict_proba(test.texts)
    assert probabilities.shape == (len(test), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert model.predict(test.texts).tolist() == probabilities.argmax(1).tolist()
    assert model.num_parameters() > 0

    model.save(tmp_path / "saved")
    loaded = SentimentModel.load(tmp_path / "saved")
    assert type(loaded) is cls
    np.testing.assert_allclose(loaded.predict_proba(test.texts), probabilities, rtol=1e-4, atol=1e-5)
