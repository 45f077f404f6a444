"""Hugging Face encoders: tiny random BERT / DistilBERT / RoBERTa / DeBERTa-v2 through both training
backends, the bundled MiniLM end to end, the tokenizer encoder (truncation, cache, chunk-and-pool),
layer-wise learning rates and the user-facing errors. No network: every model is built in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import THREE_CLASSES, tiny_reviews, tiny_three_class_reviews

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.hf import encoder as encoder_module
from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder, train_wordpiece_tokenizer
from imdb_sentiment.models.hf.model import HFClassifier
from imdb_sentiment.models.hf.network import HFNetwork
from imdb_sentiment.models.registry import get_model_class
from imdb_sentiment.models.torch_base import NetworkRequest

ARCHITECTURES = ["bert", "distilbert", "roberta", "deberta-v2"]


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def reviews(size: int, seed: int, length: tuple[int, int] = (4, 20)) -> TextDataset:
    return tiny_reviews(size, seed, length)


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer(reviews(200, 99).texts, vocab_size=120)


def tiny_config(architecture: str, vocab_size: int, pad_id: int):
    from transformers import BertConfig, DebertaV2Config, DistilBertConfig, RobertaConfig

    common = {"vocab_size": vocab_size, "pad_token_id": pad_id, "num_labels": 2}
    if architecture == "bert":
        return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=64, **common)  # fmt: skip
    if architecture == "distilbert":
        return DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, **common)
    if architecture == "roberta":
        return RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=66, **common)  # fmt: skip
    return DebertaV2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=64, relative_attention=True, position_biased_input=False,
                           pos_att_type=["p2c", "c2p"], **common)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """Random-weight checkpoints in the save_pretrained layout, as a downloaded model would be."""
    from transformers import AutoModelForSequenceClassification

    folders = {}
    for architecture in ARCHITECTURES:
        folder = tmp_path_factory.mktemp(architecture)
        torch.manual_seed(0)
        config = tiny_config(architecture, len(tokenizer), tokenizer.pad_token_id)
        AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[architecture] = folder
    return folders


def training(**overrides) -> TrainingConfig:
    settings = {"epochs": 1, "max_steps": 3, "batch_size": 8, "eval_batch_size": 16, "learning_rate": 1e-3,
                "threads": 1, "early_stopping_patience": None}  # fmt: skip
    return TrainingConfig(**{**settings, **overrides})


def fit(model: SentimentModel, tmp_path: Path, **overrides) -> FitContext:
    context = FitContext(training=training(**overrides), run_dir=tmp_path / "run", show_progress=False)
    model.fit(reviews(32, 0), reviews(8, 1), context)
    return context


# ------------------------------------------------------------------------------------ architectures
@pytest.mark.parametrize("backend", ["native", "trainer"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_tiny_checkpoint_trains_and_predicts(architecture, backend, checkpoints, tmp_path) -> None:
    params = {"checkpoint": str(checkpoints[architecture]), "max_length": 32, "attention_dropout": 0.0}
    model = HFClassifier(params)
    context = fit(model, tmp_path, backend=backend)
    assert model.fit_result is not None and model.fit_result.steps == 3
    config = model.network.backbone.config
    assert getattr(config, "attention_probs_dropout_prob", getattr(config, "attention_dropout", None)) == 0.0
    assert context.history and "valid_accuracy" in context.history[-1]
    test = reviews(10, 2)
    probabilities = model.predict_proba(test.texts)
    assert probabilities.shape == (10, 2)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-6)
    if backend == "trainer":
        assert context.extra_metrics["backend"] == "trainer"
        assert not list((tmp_path / "run" / "hf_trainer").glob("checkpoint-*")), "checkpoints are cleaned up"
    else:
        model.save(tmp_path / "saved")
        loaded = SentimentModel.load(tmp_path / "saved")
        np.testing.assert_allclose(loaded.predict_proba(test.texts), probabilities, atol=1e-5)


@pytest.mark.parametrize("backend", ["native", "trainer"])
def test_a_two_label_checkpoint_learns_three_classes_with_either_backend(backend, checkpoints, tmp_path) -> None:
    """The checkpoint's own head (2 labels) becomes a new 3-output head; it trains under either backend,
    and a saved run rebuilds 3 outputs."""
    model = HFClassifier({"checkpoint": str(checkpoints["bert"]), "max_length": 32})
    context = FitContext(training=training(backend=backend), run_dir=tmp_path / "run", show_progress=False)
    model.fit(tiny_three_class_reviews(32, 0), tiny_three_class_reviews(9, 1), context)
    assert model.classes == THREE_CLASSES and model.network.backbone.config.num_labels == 3
    assert context.extra_metrics["backend"] == backend and 0 <= context.history[-1]["valid_accuracy"] <= 1
    texts = tiny_three_class_reviews(9, 2).texts
    probabilities = model.predict_proba(texts)
    assert probabilities.shape == (9, 3) and model.predict_proba([]).shape == (0, 3)
    model.save(tmp_path / "saved")
    np.testing.assert_allclose(SentimentModel.load(tmp_path / "saved").predict_proba(texts), probabilities,
                               atol=1e-5)  # fmt: skip


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_minilm_from_package_fine_tunes_saves_and_loads(tmp_path) -> None:
    model = get_model_class("minilm")({"max_length": 32})
    context = FitContext(training=training(max_steps=2, learning_rate=1e-4), run_dir=None, show_progress=False)
    model.fit(reviews(16, 0), reviews(8, 1), context)
    assert model.network is not None and model.network.pooling == "mean"
    test = reviews(8, 2)
    probabilities = model.predict_proba(test.texts)
    assert probabilities.shape == (8, 2) and np.isfinite(probabilities).all()
    model.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "hf_model" / "config.json").is_file()
    loaded = SentimentModel.load(tmp_path / "saved")
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.predict_proba(test.texts), probabilities, atol=1e-5)
    # int8 dynamic quantisation and fp32 give nearly the same probabilities.
    loaded.params.inference_precision = "int8"
    int8 = loaded.predict_proba(test.texts)
    loaded.params.inference_precision = "fp32"
    fp32 = loaded.predict_proba(test.texts)
    np.testing.assert_allclose(int8, fp32, atol=0.05)
    # bf16 (what "auto" picks on AMX / AVX-512-BF16 hosts) rounds to an 8-bit mantissa: close to fp32, and
    # padding moves a probability by about 1e-3 at most, not 1e-4 as in fp32 (the conformance checks' bound).
    loaded.params.inference_precision = "bf16"
    bf16 = loaded.predict_proba(test.texts)
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
    one_by_one = np.concatenate([loaded.predict_proba([text], batch_size=1) for text in test.texts])
    np.testing.assert_allclose(one_by_one, bf16, atol=5e-3)


def test_supcon_and_rdrop_run_through_both_backends(checkpoints, tmp_path) -> None:
    for name, backend in (("supcon", "native"), ("r-drop", "trainer")):
        model = HFClassifier({"checkpoint": str(checkpoints["bert"]), "max_length": 32})
        fit(model, tmp_path / name, backend=backend, objective={"name": name})
        assert model.network is not None and model.network.return_features == (name == "supcon")
        assert np.isfinite(model.fit_result.history[-1]["valid_loss"])


def test_supcon_features_are_the_cls_state(checkpoints, tokenizer) -> None:
    from transformers import AutoModelForSequenceClassification

    network = HFNetwork(AutoModelForSequenceClassification.from_pretrained(checkpoints["bert"]))
    encoder = HFTokenizerEncoder(tokenizer, max_length=32)
    batch = encoder.collate([{"input_ids": ids} for ids in encoder.encode(reviews(3, 0).texts)])
    assert network(batch).features.shape == (3, 2)  # not asked for: the logits stand in
    network.return_features = True
    assert network(batch).features.shape == (3, 32)


# ------------------------------------------------------------------------------------------ encoder
@pytest.fixture(scope="module")
def minilm_tokenizer():
    from imdb_sentiment.models.hf.encoder import load_tokenizer
    from imdb_sentiment.models.hf.hub import minilm_path

    return load_tokenizer(minilm_path())


def test_encoder_truncates_head_and_tail_inside_the_special_tokens(minilm_tokenizer) -> None:
    tokenizer = minilm_tokenizer
    encoder = HFTokenizerEncoder(tokenizer, max_length=10, truncation="head+tail", pad_to_multiple_of=None)
    text = " ".join(str(i) for i in range(40))  # one distinct token per number
    raw = encoder.tokenize([text])[0].tolist()
    assert len(raw) == 40 and len(set(raw)) == 40
    ids = encoder.encode([text])[0]
    assert len(ids) == 10
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    body = ids[1:-1]
    assert body == raw[:2] + raw[-6:]  # a quarter head, three quarters tail
    assert HFTokenizerEncoder(tokenizer, max_length=10, truncation="tail").encode([text])[0][1:-1] == raw[-8:]


def test_encoder_caches_tokenisation_and_pads_to_multiple_of_8(tokenizer) -> None:
    encoder = HFTokenizerEncoder(tokenizer, max_length=64)
    texts = reviews(6, 3).texts
    first = encoder.encode(texts)

    class Broken:
        def encode_batch(self, *args, **kwargs):
            raise AssertionError("re-tokenised a cached text")

    encoder._backend = Broken()
    assert encoder.encode(texts) == first
    batch = encoder.collate([{"input_ids": ids, "label": 1} for ids in first])
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["attention_mask"].sum(1).tolist() == [len(ids) for ids in first]
    encoder_module.clear_token_cache()


def test_saved_minilm_tokenizer_settings_do_not_cut_reviews(minilm_tokenizer) -> None:
    # all-MiniLM-L6-v2's tokenizer.json ships truncation at 128 tokens; the encoder must ignore it.
    encoder = HFTokenizerEncoder(minilm_tokenizer, max_length=512)
    assert len(encoder.tokenize(["word " * 300])[0]) == 300


def test_chunk_and_pool_shapes(tokenizer, checkpoints, tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification

    encoder = HFTokenizerEncoder(tokenizer, max_length=16, chunk=True, chunk_overlap=4, max_chunks=3,
                                 pad_to_multiple_of=None)  # fmt: skip
    long_text = " ".join(f"w{i}" for i in range(60))  # digits are not in the tiny vocab: one [UNK] each
    ids = encoder.encode([long_text, "great film"])
    assert len(ids[0]) == 14 + 2 * 10  # body 14 tokens, step 10, three windows at most
    batch = encoder.collate([{"input_ids": ids[0], "label": 1}, {"input_ids": ids[1], "label": 0}])
    assert batch["num_chunks"].tolist() == [3, 1]
    assert batch["chunk_index"].tolist() == [0, 0, 0, 1]
    assert batch["input_ids"].shape == (4, 16) and batch["labels"].shape == (2,)
    assert (batch["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    network = HFNetwork(AutoModelForSequenceClassification.from_pretrained(checkpoints["bert"]))
    output = network(batch)
    assert output.logits.shape == (2, 2)
    # The pooled logits of a one-window review equal its window's logits.
    alone = network.backbone(input_ids=batch["input_ids"][3:], attention_mask=batch["attention_mask"][3:]).logits
    torch.testing.assert_close(output.logits[1], alone[0].float())

    model = HFClassifier({"checkpoint": str(checkpoints["bert"]), "max_length": 16, "chunk_and_pool": True,
                          "chunk_overlap": 4, "max_chunks": 3})  # fmt: skip
    fit(model, tmp_path)
    assert model.predict_proba([long_text, "great film", "awful"]).shape == (3, 2)


# --------------------------------------------------------------------------- training configuration
def test_layerwise_lr_decay_groups(checkpoints) -> None:
    model = HFClassifier({"checkpoint": str(checkpoints["bert"]), "max_length": 32})
    model.encoder = model.build_encoder(reviews(4, 0), FitContext(training=training()))
    network = model.build_network(NetworkRequest())
    config = training(learning_rate=1e-3, layerwise_lr_decay=0.5)
    learning_rates = {}
    for group in network.parameter_groups(config):
        for parameter in group["params"]:
            learning_rates[id(parameter)] = group["lr"]
    named = dict(network.named_parameters())
    assert learning_rates[id(named["backbone.classifier.weight"])] == pytest.approx(1e-3)
    assert learning_rates[id(named["backbone.bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(5e-4)
    assert learning_rates[id(named["backbone.bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(2.5e-4)
    assert learning_rates[id(named["backbone.bert.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)


def test_preset_sets_backend_unless_the_config_does() -> None:
    # for_training=False: the derivation alone (bert-base-uncased cannot be reached from here).
    config = configure({"model": {"name": "hf", "params": {"preset": "bert-trainer"}}}, for_training=False)
    assert config.training.backend == "trainer"
    config = configure({"model": {"name": "hf", "params": {"preset": "bert-trainer"}},
                           "training": {"backend": "native"}}, for_training=False)  # fmt: skip
    assert config.training.backend == "native"


def test_a_new_run_whose_checkpoint_cannot_be_reached_fails_at_validation(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"model\.params\.checkpoint: cannot load 'bert-base-uncased'"):
        configure({"model": {"name": "hf", "params": {"preset": "bert-trainer"}}})


def test_max_length_beyond_the_position_limit_fails_at_validation(checkpoints) -> None:
    too_long = {"model": {"name": "hf", "params": {"checkpoint": str(checkpoints["bert"]), "max_length": 4096}}}
    with pytest.raises(UserError, match=r"model\.params\.max_length: 4096 exceeds the \d+ positions"):
        configure(too_long)
    with pytest.raises(UserError, match=r"model\.params\.max_length: 1024 exceeds max_position_embeddings"):
        configure({"model": {"name": "bert-scratch", "params": {"max_length": 1024}}})
    with pytest.raises(UserError, match=r"model\.params\.max_length: 1024 exceeds the 512 positions"):
        configure({"model": {"name": "minilm", "params": {"max_length": 1024}}})
    assert configure(too_long, for_training=False).model.params["max_length"] == 4096  # a finished run loads


@pytest.mark.parametrize("method", ["p-tuning", "prompt"])
def test_virtual_tokens_count_against_the_position_limit(method) -> None:
    # P-Tuning and Prompt Tuning prepend their virtual tokens to the input: 500 + 20 > 512 positions.
    params = {"max_length": 500, "adapter": {"method": method, "virtual_tokens": 20}}
    with pytest.raises(UserError, match=r"max_length: 500 \+ 20 virtual tokens .* exceeds the 512 positions.*492"):
        configure({"model": {"name": "minilm", "params": params}})
    configure({"model": {"name": "minilm", "params": {**params, "max_length": 492}}})
    # Prefix Tuning's key / value prefixes take no input positions: the whole 512 stay usable.
    configure({"model": {"name": "minilm", "params": {"max_length": 512, "adapter": {"method": "prefix"}}}})


def test_config_errors_name_the_field(tmp_path) -> None:
    with pytest.raises(UserError, match=r"model\.params\.init_from"):
        configure({"model": {"name": "bert-scratch", "params": {"init_from": str(tmp_path / "missing")}}})
    with pytest.raises(UserError, match=r"model\.params\.preset"):
        configure({"model": {"name": "hf", "params": {"preset": "gpt-9"}}})


def test_unreachable_hub_id_is_a_user_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = HFClassifier({"checkpoint": "no-such-org/no-such-model", "max_length": 32})
    with pytest.raises(UserError, match="local folder") as caught:
        model.fit(reviews(8, 0), reviews(4, 1), FitContext(training=training(), show_progress=False))
    assert "\n" not in str(caught.value) and "HF_HOME" in str(caught.value)
    with pytest.raises(UserError, match="does not exist"):
        HFClassifier({"checkpoint": "./no/such/folder"}).fit(
            reviews(8, 0), reviews(4, 1), FitContext(training=training(), show_progress=False)
        )


def test_trainer_backend_keeps_checkpoints_after_an_interruption_and_resumes(checkpoints, tmp_path, monkeypatch):
    from imdb_sentiment.training import hf_trainer, objectives

    calls = {"n": 0}

    def interrupting(config):
        plain = objectives.build_objective(config)

        def objective(network, batch):
            calls["n"] += 1
            if calls["n"] == 6:  # 4 training steps + 1 evaluation batch = epoch 1 saved; then Ctrl-C
                raise KeyboardInterrupt
            return plain(network, batch)

        return objective

    params = {"checkpoint": str(checkpoints["bert"]), "max_length": 32}
    context = FitContext(training=training(epochs=2, max_steps=None, backend="trainer"), run_dir=tmp_path / "run",
                         show_progress=False)  # fmt: skip
    monkeypatch.setattr(hf_trainer, "build_objective", interrupting)
    with pytest.raises(KeyboardInterrupt):
        HFClassifier(params).fit(reviews(32, 0), reviews(8, 1), context)
    assert [p.name for p in (tmp_path / "run" / "hf_trainer").glob("checkpoint-*")] == ["checkpoint-4"]

    monkeypatch.undo()
    resumed_context = FitContext(training=context.training, run_dir=tmp_path / "run", resume=True,
                                 show_progress=False)  # fmt: skip
    model = HFClassifier(params).fit(reviews(32, 0), reviews(8, 1), resumed_context)
    assert model.fit_result is not None and model.fit_result.steps == 8
    assert [row["epoch"] for row in resumed_context.history] == [1.0, 2.0]
    assert not list((tmp_path / "run" / "hf_trainer").glob("checkpoint-*")), "cleaned up once finished"


def test_trainer_backend_resumes_mid_epoch_exactly_after_a_crash_or_sigterm(checkpoints, tmp_path, monkeypatch):
    """checkpoint_every_steps through the Trainer's own save / resume_from_checkpoint: a crash in epoch 2
    resumes from step 6 (2 batches into the epoch), SIGTERM saves step 7 and stops; both resumes end
    where an uninterrupted run does, bit for bit."""
    from imdb_sentiment.training import hf_trainer, objectives

    params = {"checkpoint": str(checkpoints["bert"]), "max_length": 32}
    settings = training(epochs=2, max_steps=None, backend="trainer", checkpoint_every_steps=3)

    def fit(run_dir: Path, resume: bool = False) -> tuple[HFClassifier, FitContext]:
        torch.manual_seed(0)
        context = FitContext(training=settings, run_dir=run_dir, resume=resume, show_progress=False)
        return HFClassifier(params).fit(reviews(32, 0), reviews(8, 1), context), context

    expected, expected_context = fit(tmp_path / "reference")
    calls = {"n": 0}

    def crashing(config):
        plain = objectives.build_objective(config)

        def objective(network, batch):
            calls["n"] += 1
            if calls["n"] == 8:  # steps 1-4, evaluation, steps 5-6 (saved), then step 7
                raise KeyboardInterrupt
            return plain(network, batch)

        return objective

    monkeypatch.setattr(hf_trainer, "build_objective", crashing)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "run")
    saved = sorted(p.name for p in (tmp_path / "run" / "hf_trainer").glob("checkpoint-*"))
    assert "checkpoint-6" in saved
    monkeypatch.undo()
    resumed, resumed_context = fit(tmp_path / "run", resume=True)
    assert resumed.fit_result.steps == expected.fit_result.steps == 8
    assert [row["valid_loss"] for row in resumed_context.history] == [
        row["valid_loss"] for row in expected_context.history
    ]
    for name, value in expected.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[name], value, rtol=0, atol=0)

    # SIGTERM during step 7: the Trainer saves checkpoint-7, stops, and a resume again ends the same way.
    import os
    import signal

    from imdb_sentiment.training.preemption import TrainingStopped, stop_on_sigterm

    calls["n"] = 0

    def terminated(config):
        plain = objectives.build_objective(config)

        def objective(network, batch):
            calls["n"] += 1
            if calls["n"] == 8:
                os.kill(os.getpid(), signal.SIGTERM)
            return plain(network, batch)

        return objective

    monkeypatch.setattr(hf_trainer, "build_objective", terminated)
    with stop_on_sigterm(), pytest.raises(TrainingStopped) as stopped:
        fit(tmp_path / "term")
    assert stopped.value.step == 7
    assert (tmp_path / "term" / "hf_trainer" / "checkpoint-7" / "manifest.json").is_file()
    monkeypatch.undo()
    resumed, _ = fit(tmp_path / "term", resume=True)
    for name, value in expected.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[name], value, rtol=0, atol=0)


def test_trainer_backend_resumes_from_the_newest_checkpoint_that_matches_its_checksums(tmp_path, caplog):
    import logging

    from imdb_sentiment.training.hf_trainer import latest_intact_checkpoint, write_checksums

    assert latest_intact_checkpoint(tmp_path) is None  # nothing saved yet: a fresh start
    for step in (4, 6, 9):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(bytes(range(step)))
        if step != 9:  # checkpoint-9 was cut off before its checksums were written
            write_checksums(folder)
    assert latest_intact_checkpoint(tmp_path).name == "checkpoint-6"
    (tmp_path / "checkpoint-6" / "model.safetensors").write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING, logger="imdb_sentiment.training"):
        assert latest_intact_checkpoint(tmp_path).name == "checkpoint-4"
    assert "checkpoint-6 is damaged" in caplog.text
    (tmp_path / "checkpoint-4" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="cannot resume"):
        latest_intact_checkpoint(tmp_path)
