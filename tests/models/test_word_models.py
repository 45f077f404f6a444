"""The eight word models: they learn, padding never changes an output, config checks name fields."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FILLER, THREE_CLASSES, tiny_reviews

from imdb_sentiment.config import ExperimentConfig, TrainingConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import SENTIMENT
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.models.word.base import WordModel
from imdb_sentiment.text.vocabulary import PAD_ID

WORD_MODELS = ["fasttext", "cnn", "lstm", "gru", "cnn-lstm", "attention-lstm", "capsule-lstm", "transformer"]
TINY = {"embeddings": "random", "embedding_dim": 16, "max_length": 32, "min_freq": 1, "dropout": 0.1}
TINY_PARAMS: dict[str, dict] = {
    "fasttext": {**TINY, "buckets": 512},
    "cnn": {**TINY, "num_filters": 8},
    "lstm": {**TINY, "hidden_size": 8},
    "gru": {**TINY, "hidden_size": 8, "num_layers": 2, "pooling": "last"},
    "cnn-lstm": {**TINY, "num_filters": 8, "hidden_size": 8, "kernel_size": 3, "pool_size": 2},
    "attention-lstm": {**TINY, "hidden_size": 8, "attention_size": 8},
    "capsule-lstm": {**TINY, "hidden_size": 8, "primary_capsules": 2, "primary_dim": 4, "class_dim": 4},
    "transformer": {**TINY, "d_model": 24, "num_heads": 2, "num_layers": 1, "feedforward_dim": 32},
}


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def reviews(size: int, seed: int) -> TextDataset:
    """Filler words of varied length (and "!") with two sentiment cue words: learnable in a few steps."""
    return tiny_reviews(size, seed, length=(1, 25), filler=(*FILLER, "!"))


def training(**changes: object) -> TrainingConfig:
    settings = {"epochs": 6, "batch_size": 16, "learning_rate": 1e-2, "threads": 1, "scheduler": "constant",
                "early_stopping_patience": None, **changes}  # fmt: skip
    return TrainingConfig(**settings)


def built_model(name: str, **changes: object) -> WordModel:
    """A model with its vocabulary and network built (no training), network in eval mode."""
    model = get_model_class(name)({**TINY_PARAMS[name], **changes})
    assert isinstance(model, WordModel)
    model.encoder = model.build_encoder(reviews(32, 0), FitContext(training=training()))
    model.network = model.build_network(NetworkRequest()).eval()
    return model


def batch_of(model: WordModel, texts: list[str], extra_padding: int = 0) -> dict[str, torch.Tensor]:
    assert model.encoder is not None
    batch = model.encoder.collate([{"input_ids": ids} for ids in model.encoder.encode(texts)])
    if extra_padding:
        rows = batch["input_ids"].shape[0]
        batch["input_ids"] = torch.cat([batch["input_ids"], torch.full((rows, extra_padding), PAD_ID)], dim=1)
        batch["attention_mask"] = torch.cat(
            [batch["attention_mask"], torch.zeros(rows, extra_padding, dtype=torch.long)], dim=1
        )
    return batch


@pytest.mark.parametrize("name", WORD_MODELS)
def test_loss_falls_on_a_tiny_dataset(name: str, tmp_path) -> None:
    model = get_model_class(name)(TINY_PARAMS[name])
    # A bag of words moves slowly at first (each word is a small share of the mean): larger steps.
    learning_rate = 0.05 if name == "fasttext" else 1e-2
    context = FitContext(training=training(learning_rate=learning_rate), show_progress=False)
    model.fit(reviews(96, 0), reviews(16, 1), context)
    losses = [epoch["train_loss"] for epoch in context.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert context.extra_metrics["vocabulary_size"] > 10


@pytest.mark.parametrize("name", WORD_MODELS)
def test_padding_never_changes_an_output(name: str) -> None:
    model = built_model(name)
    texts = ["great", "the movie was awful and boring", "a film " * 12 + "loved it", "plot !"]
    with torch.no_grad():
        together = model.network(batch_of(model, texts))
        padded = model.network(batch_of(model, texts, extra_padding=9))
        alone = torch.cat([model.network(batch_of(model, [text])).logits for text in texts])
    assert together.logits.shape == (len(texts), 2)
    assert together.features.ndim == 2 and together.features.shape[0] == len(texts)
    torch.testing.assert_close(padded.logits, together.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.features, together.features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, together.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "changes",
    [{"bidirectional": False, "pooling": "last"}, {"pooling": "mean"}, {"pooling": "max"}, {"num_layers": 2}],
)
def test_rnn_variants_ignore_padding(changes: dict) -> None:
    model = built_model("lstm", **changes)
    texts = ["great film", "the the plot was boring and awful awful"]
    with torch.no_grad():
        together = model.network(batch_of(model, texts)).logits
        padded = model.network(batch_of(model, texts, extra_padding=5)).logits
    torch.testing.assert_close(padded, together, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "changes", [{"positional": "learned"}, {"pooling": "cls"}, {"d_model": None, "embedding_dim": 16}]
)
def test_transformer_variants_ignore_padding(changes: dict) -> None:
    model = built_model("transformer", **changes)
    texts = ["great film", "the the plot was boring and awful awful"]
    with torch.no_grad():
        together = model.network(batch_of(model, texts)).logits
        padded = model.network(batch_of(model, texts, extra_padding=5)).logits
    torch.testing.assert_close(padded, together, atol=1e-5, rtol=1e-5)


def test_attention_weights_are_zero_on_padding_and_sum_to_one() -> None:
    model = built_model("attention-lstm")
    batch = batch_of(model, ["great", "the movie was awful and boring", "plot !"], extra_padding=3)
    with torch.no_grad():
        output = model.network(batch)
    weights, mask = output.attention, batch["attention_mask"].bool()
    assert weights.shape == mask.shape
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))
    assert model.network.last_attention is not None
    pairs = model.attention_weights(["the movie was awful"])[0]
    assert [token for token, _ in pairs] == ["the", "movie", "was", "awful"]
    assert sum(weight for _, weight in pairs) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("orphan", [True, False])
def test_capsule_logits_are_scaled_capsule_lengths(orphan: bool) -> None:
    model = built_model("capsule-lstm", orphan_capsule=orphan)
    assert model.network.transforms.shape[1] == 2 + orphan
    with torch.no_grad():
        output = model.network(batch_of(model, ["great film", "awful"]))
    lengths = output.features.view(2, 2, -1).norm(dim=-1)
    assert torch.all(lengths < 1)
    torch.testing.assert_close(output.logits, model.params.length_scale * lengths)


@pytest.mark.parametrize("orphan", [True, False])
def test_three_class_capsules_route_with_or_without_the_orphan(orphan: bool) -> None:
    """One class capsule per class (the orphan is routed to, never a logit)."""
    model = get_model_class("capsule-lstm")({**TINY_PARAMS["capsule-lstm"], "orphan_capsule": orphan})
    model.classes = THREE_CLASSES
    model.encoder = model.build_encoder(reviews(32, 0), FitContext(training=training()))
    model.network = model.build_network(NetworkRequest()).eval()
    assert model.network.transforms.shape[1] == 3 + orphan
    with torch.no_grad():
        output = model.network(batch_of(model, ["great film", "awful", "okay"]))
    assert output.logits.shape == (3, 3) and output.features.shape == (3, 3 * 4)


def test_a_folder_saved_before_classes_were_recorded_loads_as_the_binary_task(tmp_path) -> None:
    """Old run folders: model.json without "classes" is sentiment, two outputs, the same predictions."""
    model = get_model_class("cnn")(TINY_PARAMS["cnn"])
    model.fit(reviews(32, 0), reviews(8, 1), FitContext(training=training(epochs=1), show_progress=False))
    model.save(tmp_path / "saved")
    meta_file = tmp_path / "saved" / "model.json"
    meta = json.loads(meta_file.read_text())
    assert meta.pop("classes") is not None
    meta_file.write_text(json.dumps(meta))
    loaded = SentimentModel.load(tmp_path / "saved")
    texts = reviews(6, 2).texts
    assert loaded.classes == SENTIMENT and loaded.network.head.linear.out_features == 2
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))


def test_fasttext_uses_hashed_bigrams() -> None:
    with_bigrams = built_model("fasttext")
    without = built_model("fasttext", bigrams=False)
    vocabulary_size = len(with_bigrams.vocabulary)
    assert with_bigrams.network.bag.num_embeddings == vocabulary_size + 512
    assert without.network.bag.num_embeddings == vocabulary_size
    # Word order matters only through bigrams.
    texts = ["great movie awful", "awful movie great"]
    with torch.no_grad():
        swapped = with_bigrams.network(batch_of(with_bigrams, texts)).logits
        bag_only = without.network(batch_of(without, texts)).logits
    assert not torch.allclose(swapped[0], swapped[1])
    torch.testing.assert_close(bag_only[0], bag_only[1])


def test_pretrained_vectors_file_initialises_embeddings(tmp_path) -> None:
    vectors = tmp_path / "glove.txt"
    vectors.write_text("great 1 2 3 4\nawful -1 -2 -3 -4\n", encoding="utf-8")
    model = get_model_class("cnn")({**TINY_PARAMS["cnn"], "embeddings": str(vectors), "embedding_dim": 4,
                                    "freeze_embeddings": True})  # fmt: skip
    context = FitContext(training=training(epochs=1), show_progress=False)
    model.fit(reviews(32, 0), reviews(8, 1), context)
    weight = model.network.embedding.embedding.weight
    assert not weight.requires_grad
    assert weight[model.vocabulary.index["great"]].tolist() == [1, 2, 3, 4]
    assert context.extra_metrics["embedding_coverage"]["covered_words"] == 2


def test_word2vec_embeddings_come_from_train_and_unsup(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    params = {**TINY_PARAMS["cnn"], "embeddings": "word2vec", "embedding_dim": 8,
              "word2vec": {"min_count": 1, "epochs": 1, "workers": 1}}  # fmt: skip
    unsup = TextDataset(["an unlabeled review with the word zyzzyva"] * 3, np.full(3, -1))
    model = get_model_class("cnn")(params)
    context = FitContext(training=training(epochs=1), unsup=unsup, show_progress=False)
    model.fit(reviews(32, 0), reviews(8, 1), context)
    assert context.extra_metrics["embedding_coverage"]["word_coverage"] == 1.0
    assert not context.extra_metrics["word2vec_cached"]
    assert list((tmp_path / "imdb-sentiment" / "embeddings").glob("word2vec-8d-*.bin"))
    second = FitContext(training=training(epochs=1), unsup=unsup, show_progress=False)
    get_model_class("cnn")(params).fit(reviews(32, 0), reviews(8, 1), second)
    assert second.extra_metrics["word2vec_cached"]


def experiment(name: str, **params: object) -> ExperimentConfig:
    return configure({"model": {"name": name, "params": params}})


def test_config_checks_name_the_fields(tmp_path) -> None:
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("great 1 2 3\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"model.params.embedding_dim: 100 does not match the 3-dim"):
        experiment("lstm", embeddings=str(vectors), embedding_dim=100)
    experiment("lstm", embeddings=str(vectors), embedding_dim=3)  # matching sizes pass
    with pytest.raises(UserError, match=r"model.params.embeddings: Vectors file .* does not exist"):
        experiment("cnn", embeddings=str(tmp_path / "missing.bin"))
    with pytest.raises(UserError, match=r"model\.params\.freeze_embeddings"):
        experiment("gru", embeddings="random", freeze_embeddings=True)
    with pytest.raises(UserError, match=r"model\.params\.freeze_embeddings"):
        experiment("fasttext", freeze_embeddings=True, embeddings="word2vec")


def test_transformer_width_mismatch_is_projected_or_refused() -> None:
    # The write-up's bug: embeddings of 300 and a model width of 120. Projected by default...
    config = experiment("transformer", embedding_dim=300, d_model=120, num_heads=4, embeddings="random")
    assert config.model.params["d_model"] == 120
    model = built_model("transformer", embedding_dim=30, d_model=12, num_heads=4)
    with torch.no_grad():
        assert model.network(batch_of(model, ["great film"])).logits.shape == (1, 2)
    # ... or refused with a message naming both fields.
    with pytest.raises(UserError, match=r"model.params.d_model: 120 differs from model.params.embedding_dim 300"):
        experiment("transformer", embedding_dim=300, d_model=120, project_embeddings=False, embeddings="random")
    with pytest.raises(UserError, match=r"model\.params\.num_heads: 7 does not divide"):
        experiment("transformer", embedding_dim=300, d_model=120, num_heads=7, embeddings="random")
