"""Every registered model against the shared contract (``imdb_sentiment.models.checks``).

Each model is fitted once, briefly, on tiny reviews; every check its tags select then runs on that
fit as its own named test (``test_conformance[cnn-save_load_round_trip]``). A newly registered model
must add its tiny settings to TINY_PARAMS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from fake_openai import shared_fake_server
from helpers import tiny_causal_lm_folder, tiny_reviews, tiny_three_class_reviews

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.models.base import FitContext
from imdb_sentiment.models.checks import CheckCase, model_checks
from imdb_sentiment.models.registry import available_models, get_model_class

WORD = {"embeddings": "random", "embedding_dim": 16, "max_length": 24, "min_freq": 1}
TINY_BERT = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_length": 32}
# A random 1-layer Llama with a word-level tokenizer, saved to a temporary folder (no hub).
TINY_LLM = {"checkpoint": tiny_causal_lm_folder(), "shots": 2, "max_length": 16, "calibration_size": 8}
TINY_PARAMS: dict[str, dict] = {
    "tfidf-lr": {"min_df": 1},
    "nbsvm": {"min_df": 1, "max_features": None},
    "doc2vec": {"vector_size": 8, "epochs": 2, "min_count": 1},
    "fasttext": WORD,
    "cnn": {**WORD, "num_filters": 8},
    "lstm": {**WORD, "hidden_size": 8},
    "gru": {**WORD, "hidden_size": 8},
    "cnn-lstm": {**WORD, "num_filters": 8, "hidden_size": 8},
    "attention-lstm": {**WORD, "hidden_size": 8},
    "capsule-lstm": {**WORD, "hidden_size": 8},
    "transformer": {**WORD, "num_layers": 1, "num_heads": 2, "feedforward_dim": 32},
    # A random 1-layer BERT with MiniLM's vocabulary: the real loading paths, no download.
    "hf": {"from_scratch": True, **TINY_BERT},
    # The real bundled weights; still only a few steps. fp32 inference: the checks compare predictions to
    # 1e-4, and on an AMX / AVX-512-BF16 host "auto" means bf16, whose 8-bit mantissa moves a probability by
    # up to ~1e-3 when padding changes (measured 7e-4); bf16 is covered by tests/models/test_hf_models.py.
    "minilm": {"max_length": 32, "inference_precision": "fp32"},
    "bert-scratch": TINY_BERT,
    "ensemble": {
        "members": [
            {"model": "nbsvm", "params": {"min_df": 1, "max_features": None, "refit_on_train_and_valid": False}},
            {"model": "fasttext", "params": WORD},
        ]
    },
    "llm-score": TINY_LLM,
    "llm-sft": {**TINY_LLM, "adapter": {"method": "lora", "rank": 2}},
    # The bundled MiniLM tuned on one pair per review and side: a few contrastive steps.
    "setfit": {"num_iterations": 1, "max_length": 32, "batch_size": 8},
    # A fake OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py); answers cached per process.
    "llm-prompt": {
        "base_url": shared_fake_server().base_url,
        "model": "fake",
        "shots": 2,
        "answer_cache": tempfile.mkdtemp(prefix="llm-answers-"),
    },
}


# Variants of a registered model that change what trains: each joins the contract as its own case.
VARIANTS: dict[str, tuple[str, dict]] = {
    f"minilm+{method}": ("minilm", {"max_length": 32, "inference_precision": "fp32", "adapter": adapter})
    for method, adapter in {
        "lora": {"method": "lora", "rank": 4},
        "p-tuning": {"method": "p-tuning", "virtual_tokens": 4, "encoder_hidden_size": 16},
        "prefix": {"method": "prefix", "prefix_length": 4, "projection": 16},
        "prompt": {"method": "prompt", "virtual_tokens": 4},
    }.items()
}
CASES: dict[str, tuple[str, dict]] = {name: (name, TINY_PARAMS[name]) for name in available_models()} | VARIANTS
# Every case again on three classes (negative / neutral / positive): "<case>@3".
MULTICLASS_SUFFIX = "@3"


def test_every_registered_model_has_tiny_settings() -> None:
    assert set(available_models()) <= set(TINY_PARAMS), "add tiny settings for new models to TINY_PARAMS"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict[str, CheckCase]:
    """name -> its one tiny fit, made on first use and shared by all of its checks."""
    cases: dict[str, CheckCase] = {}

    def fit(name: str) -> CheckCase:
        if name not in cases:
            torch.manual_seed(0)
            workdir = Path(tmp_path_factory.mktemp(name))
            multiclass = name.endswith(MULTICLASS_SUFFIX)
            model_name, params = CASES[name.removesuffix(MULTICLASS_SUFFIX)]
            model = get_model_class(model_name)(params)
            training = TrainingConfig(epochs=2, batch_size=8, learning_rate=5e-3, max_steps=8, threads=2)
            context = FitContext(training=training, run_dir=workdir / "run", show_progress=False)
            reviews = tiny_three_class_reviews if multiclass else tiny_reviews
            train, valid, test = reviews(48, 0), reviews(16, 1), reviews(12, 2)
            returned = model.fit(train, valid, context)
            cases[name] = CheckCase(model, returned, context, train, valid, test, workdir)
        return cases[name]

    return fit  # type: ignore[return-value]


CHECK_IDS = [
    (case + suffix, check_name, check)
    for case, (model_name, _) in CASES.items()
    for suffix in ("", MULTICLASS_SUFFIX)
    for check_name, check in model_checks(get_model_class(model_name), multiclass=bool(suffix))
]


@pytest.mark.parametrize(("name", "check_name", "check"), CHECK_IDS, ids=[f"{n}-{c}" for n, c, _ in CHECK_IDS])
def test_conformance(name: str, check_name: str, check, fitted) -> None:
    check(fitted(name))
