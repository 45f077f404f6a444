"""The template search of the label-word scorers (llm-score, llm-sft): candidates refused in one line
before a run, scored on training reviews only, the best chosen (a tiny Llama rigged so that one pair of
label words reads the reviews), recorded in the run and kept by the saved model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    NEGATIVE_CUES,
    POSITIVE_CUES,
    THREE_CLASSES,
    fit_context,
    one_line_user_error,
    run_cli,
    save_tiny_causal_lm,
    tiny_causal_lm_folder,
    tiny_reviews,
    tiny_three_class_reviews,
    write_tiny_parquet_imdb,
)

from imdb_sentiment.data.labels import SENTIMENT
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.llm.encoding import LMPromptParams, PromptEncoder
from imdb_sentiment.models.llm.search import SENTIMENT_CANDIDATES, candidate_prompts
from imdb_sentiment.models.registry import get_model_class


@pytest.fixture(scope="module")
def rigged_lm(tmp_path_factory) -> str:
    """The tiny Llama made to read sentiment: queries and keys are zero, so the last position attends
    evenly to every token before it, and one hidden unit carries +1 for a positive cue word, -1 for a
    negative one, 0 for any other; the LM head reads that unit only for "positive" (+) and "negative" (-).
    So those two label words rank the tiny reviews (two cue words each) perfectly, any others not at all."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_tiny_causal_lm(tmp_path_factory.mktemp("rigged-llm"))
    lm, tokenizer = AutoModelForCausalLM.from_pretrained(str(folder)), AutoTokenizer.from_pretrained(str(folder))
    assert lm.lm_head.weight.data_ptr() != lm.model.embed_tokens.weight.data_ptr()  # untied: set apart
    token = tokenizer.convert_tokens_to_ids
    with torch.no_grad():
        embeddings = lm.model.embed_tokens.weight
        embeddings.zero_()
        embeddings[:, 1] = 1.0  # every token has a norm
        for word in POSITIVE_CUES:
            embeddings[token(word), 0] = 1.0
        for word in NEGATIVE_CUES:
            embeddings[token(word), 0] = -1.0
        layer = lm.model.layers[0]
        for weight in (layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.mlp.down_proj.weight):
            weight.zero_()
        for weight in (layer.self_attn.v_proj.weight, layer.self_attn.o_proj.weight):
            weight.zero_()
            weight[0, 0] = 1.0  # unit 0 passes through attention
        lm.lm_head.weight.zero_()
        lm.lm_head.weight[token("positive"), 0] = 8.0
        lm.lm_head.weight[token("negative"), 0] = -8.0
    lm.save_pretrained(str(folder))
    return str(folder)


READING_WORDS = {"label_words": ["negative", "positive"]}
BLIND = {"label_words": ["user", "system"]}  # the rigged head gives both the same logit


def searched(checkpoint: str, **params) -> tuple[SentimentModel, FitContext]:
    model = get_model_class(params.pop("model", "llm-score"))(
        {"checkpoint": checkpoint, "max_length": 24, "calibration_size": 8, **params}
    )
    used_context = fit_context()
    model.fit(tiny_reviews(40, 0), tiny_reviews(8, 1), used_context)
    return model, used_context


# ------------------------------------------------------------------------------ refused before a run
@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({"template_search": 8, "template_candidates": [{"template": "Is it good?"}]},
         ("model.params.template_candidates.0.template", "{text}")),
        ({"template_search": 8, "template_candidates": [{"label_words": ["bad", "meh", "good"]}]},
         ("model.params.template_candidates.0.label_words", "3 words for 2 classes")),
        ({"template_search": 8, "template_candidates": [{"label_words": ["good", " Good"]}]},
         ("model.params.template_candidates.0.label_words", "must differ")),
        ({"template_candidates": [{"label_words": ["bad", "good"]}]},
         ("model.params.template_candidates", "set template_search")),
        ({"template_search": 1}, ("model.params.template_search", "one training review per class")),
    ],
)  # fmt: skip
def test_bad_candidates_are_one_line_naming_the_field_before_a_run(tmp_path, params, fragments) -> None:
    write_tiny_parquet_imdb(tmp_path / "data", size=12)
    raw = {"data": {"path": str(tmp_path / "data")},
           "model": {"name": "llm-score", "params": {"checkpoint": tiny_causal_lm_folder(), **params}}}  # fmt: skip
    one_line_user_error(lambda: configure(raw), *fragments)


def test_a_tables_classes_are_checked_against_the_candidates_when_the_fit_starts() -> None:
    model = get_model_class("llm-score")({"checkpoint": tiny_causal_lm_folder(), "template_search": 6,
                                          "template_candidates": [{"label_words": ["bad", "good"]}]})  # fmt: skip
    one_line_user_error(lambda: model.check_classes(THREE_CLASSES), "template_candidates.0.label_words", "2 words")
    few = get_model_class("llm-score")({"checkpoint": tiny_causal_lm_folder(), "template_search": 2})
    one_line_user_error(lambda: few.check_classes(THREE_CLASSES), "model.params.template_search", "3 classes")


def test_the_cli_refuses_a_bad_candidate_without_a_run_folder(tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "data", size=12)
    args = ["train", "llm-score", "--data", str(tmp_path / "data"), "--quiet", "--output-dir", str(tmp_path / "runs"),
            "--set", f"model.params.checkpoint={json.dumps(tiny_causal_lm_folder())}",
            "--set", "model.params.template_search=8",
            "--set", 'model.params.template_candidates=[{"label_words": ["a", "b", "c"]}]']  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "model.params.template_candidates.0.label_words: 3 words for 2 classes" in err, err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------- the candidates
def test_the_configured_prompt_comes_first_then_the_built_in_ones() -> None:
    prompts = candidate_prompts(LMPromptParams(template_search=8), SENTIMENT)
    assert prompts[0] == LMPromptParams(template_search=8).for_task(SENTIMENT)
    assert [prompt.label_words for prompt in prompts[1:]] == [c.label_words for c in SENTIMENT_CANDIDATES]
    assert len(prompts) == 4 and all(prompt.template.count("{text}") == 1 for prompt in prompts)
    three = candidate_prompts(LMPromptParams(template_search=9, label_words=["sad", "meh", "glad"]), THREE_CLASSES)
    assert len(three) == 3 and all(prompt.label_words == ["sad", "meh", "glad"] for prompt in three)
    assert all("sad, meh or glad" in prompt.template for prompt in three)


# --------------------------------------------------------------------------------------- the search
def test_the_search_chooses_the_prompt_that_reads_the_reviews_and_the_saved_model_keeps_it(
    rigged_lm, tmp_path
) -> None:
    model, used_context = searched(rigged_lm, template_search=12, **BLIND,
                                  template_candidates=[{"label_words": ["assistant", "system"]}, READING_WORDS])  # fmt: skip
    record = used_context.extra_metrics["template_search"]
    assert record["chosen"] == 2 and record["criterion"] == "roc_auc" and record["reviews"] == 12
    assert [c["roc_auc"] for c in record["candidates"]] == pytest.approx([0.5, 0.5, 1.0])
    assert [c["label_words"] for c in record["candidates"]] == [["user", "system"], ["assistant", "system"],
                                                                ["negative", "positive"]]  # fmt: skip
    assert model.params.label_words == model.prompt.label_words == ["negative", "positive"]
    test = tiny_reviews(10, 2)
    probabilities = model.predict_proba(test.texts)
    assert (probabilities.argmax(1) == test.labels).all()
    model.save(tmp_path / "saved")
    loaded = SentimentModel.load(tmp_path / "saved")
    assert (
        loaded.params.label_words == ["negative", "positive"] and loaded.params.template == model.prompt.template
    )
    np.testing.assert_allclose(loaded.predict_proba(test.texts), probabilities, atol=1e-6)
    assert model.train_examples_used(40) == len(model.reviews_read) and 12 <= len(model.reviews_read) <= 12 + 8


def test_the_search_reads_training_reviews_only(monkeypatch) -> None:
    train, valid = tiny_reviews(40, 0), tiny_reviews(12, 1)
    valid.texts = [f"{text} movie" for text in valid.texts]  # no validation review is also a training one
    seen: list[str] = []
    encode = PromptEncoder.encode

    def spy(self, texts):
        seen.extend(texts)
        return encode(self, texts)

    monkeypatch.setattr(PromptEncoder, "encode", spy)
    params = {"checkpoint": tiny_causal_lm_folder(), "max_length": 24, "calibration_size": 4, "shots": 2}
    plain = get_model_class("llm-score")(params).fit(train, valid, fit_context())
    without = set(seen)
    seen.clear()
    model = get_model_class("llm-score")({**params, "template_search": 10})
    used_context = fit_context()
    model.fit(train, valid, used_context)
    content_free = set(model.params.content_free_inputs)
    read = set(seen) - content_free
    assert read <= set(train.texts) and not read & set(valid.texts)
    searched_rows = read - without  # the search's own reviews: ten, balanced, none of the shots
    shots = {text for text, _ in model.shots}
    assert not searched_rows & shots and {text for text, _ in plain.shots} == shots
    reviews = [i for i, text in enumerate(train.texts) if text in read - shots]
    assert len(reviews) == len(model.reviews_read) and set(reviews) == model.reviews_read
    assert used_context.extra_metrics["template_search"]["reviews"] == 10
    search_sample = model.reviews_read - plain.reviews_read
    assert np.bincount(train.labels[sorted(search_sample)], minlength=2).min() >= 1


def test_search_off_keeps_the_configured_prompt_and_records_nothing(rigged_lm) -> None:
    model, used_context = searched(rigged_lm, **BLIND)
    assert "template_search" not in used_context.extra_metrics
    assert model.params.label_words == ["user", "system"] and model.params.template is None
    assert len(model.reviews_read) == 8 == model.calibration_reviews


def test_a_candidate_the_tokenizer_cannot_score_is_skipped_and_recorded(rigged_lm) -> None:
    """The words yes / no are not in the tiny word-level vocabulary: both are <unk>, one token for two."""
    model, used_context = searched(rigged_lm, template_search=8)  # the built-in sentiment candidates
    record = used_context.extra_metrics["template_search"]
    candidates = record["candidates"]
    assert "skipped" in candidates[1] and "same token" in candidates[1]["skipped"]
    assert record["chosen"] in [i for i, candidate in enumerate(candidates) if "roc_auc" in candidate]
    assert model.prompt.label_words == candidates[record["chosen"]]["label_words"]


def test_three_classes_are_rated_by_log_likelihood_after_calibration() -> None:
    model = get_model_class("llm-score")({"checkpoint": tiny_causal_lm_folder(), "max_length": 16,
                                          "calibration_size": 9, "template_search": 9})  # fmt: skip
    used_context = fit_context()
    model.fit(tiny_three_class_reviews(30, 0), tiny_three_class_reviews(6, 1), used_context)
    record = used_context.extra_metrics["template_search"]
    assert record["criterion"] == "log_likelihood" and len(record["candidates"]) == 3
    values = [candidate["log_likelihood"] for candidate in record["candidates"]]
    assert record["chosen"] == int(np.argmax(values)) and all(value < 0 for value in values)
    assert model.prompt.template == record["candidates"][record["chosen"]]["template"]


def test_llm_sft_searches_on_the_frozen_base_and_trains_the_chosen_prompt(rigged_lm) -> None:
    model, used_context = searched(rigged_lm, model="llm-sft", template_search=8, **BLIND, max_length=12,
                                  template_candidates=[READING_WORDS], adapter={"method": "lora", "rank": 2})  # fmt: skip
    assert used_context.extra_metrics["template_search"]["chosen"] == 1
    assert model.params.label_words == ["negative", "positive"]


def test_train_records_the_search_in_metrics_and_the_choice_in_model_json(rigged_lm, tmp_path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "data", size=24)
    args = ["train", "llm-score", "--data", str(tmp_path / "data"), "--quiet", "--output-dir", str(tmp_path / "runs"),
            "--set", f"model.params.checkpoint={json.dumps(rigged_lm)}", "--set", "model.params.max_length=12",
            "--set", "model.params.calibration_size=6", "--set", "model.params.template_search=8",
            "--set", 'model.params.label_words=["user", "system"]',
            "--set", 'model.params.template_candidates=[{"label_words": ["negative", "positive"]}]']  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    run = next(Path(path).parent for path in (tmp_path / "runs").rglob("metrics.json"))
    details = json.loads((run / "metrics.json").read_text())["details"]["template_search"]
    assert details["chosen"] == 1 and details["candidates"][1]["roc_auc"] == pytest.approx(1.0)
    saved = json.loads(next(run.rglob("model.json")).read_text())["params"]
    assert saved["label_words"] == ["negative", "positive"] and saved["answer_prefix"] == "The sentiment is"
