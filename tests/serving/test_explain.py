"""Explanations for every model kind: words with offsets into the text sent, faithful scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imdb_sentiment.data.cleaning import clean_text
from imdb_sentiment.serving.explain import LinearExplainer, explainer_for
from imdb_sentiment.serving.predictor import Predictor

TEXT = "The <i>plot</i> was great &amp; wonderful,<br /><br />but the ACTOR was awful... great film!"
METHODS = {"nbsvm": "linear", "tfidf-lr": "linear", "attention-lstm": "attention", "cnn": "integrated-gradients",
           "hf": "integrated-gradients", "fasttext": "occlusion"}  # fmt: skip


def explainer(trained_run, name: str):
    predictor = Predictor.from_run(trained_run(name))
    return predictor, explainer_for(predictor.model, predictor.config.data.clean)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_kind_explains_words_of_the_text_sent(trained_run, name) -> None:
    _, chosen = explainer(trained_run, name)
    explanation = chosen.explain(TEXT)
    assert explanation.method == METHODS[name]
    words = [word.text for word in explanation.words]
    for word in explanation.words:
        assert TEXT[word.start : word.end] == word.text
    # Cleaning's HTML never becomes a word, and words split where a tag was.
    assert not any("<" in word or ">" in word for word in words if word != "<i>plot</i>")
    assert {"great", "awful...", "film!"} <= set(words) and "wonderful," in words
    scores = np.array([word.score for word in explanation.words])
    assert np.abs(scores).sum() > 0
    if not explanation.signed:  # attention: weights over the tokens read, summing to one
        assert (scores >= 0).all() and scores.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["nbsvm", "tfidf-lr"])
def test_linear_contributions_sum_to_the_decision_function(trained_run, name) -> None:
    _, chosen = explainer(trained_run, name)
    assert isinstance(chosen, LinearExplainer)
    for text in (TEXT, "great great great film film", "no known word here: zzz qqq"):
        total = sum(word.score for word in chosen.explain(text).words)
        assert total == pytest.approx(chosen.decision_without_intercept(text), abs=1e-5)


@pytest.mark.parametrize("name", ["cnn", "hf"])
def test_integrated_gradients_add_up_to_the_margin_change(trained_run, name) -> None:
    """IG's completeness: attributions sum to margin(text) - margin(baseline: padding for every text token)."""
    predictor, chosen = explainer(trained_run, name)
    cleaned = clean_text(TEXT, predictor.config.data.clean)
    spans, [(batch, _)] = chosen.inputs(cleaned)
    reads_text = torch.tensor([span is not None for span in spans])
    baseline = {**batch, "input_ids": torch.where(reads_text, chosen.baseline_id, batch["input_ids"])}
    with torch.no_grad():
        margins = [predictor.model.network(b).logits[0] for b in (batch, baseline)]
    change = float((margins[0][1] - margins[0][0]) - (margins[1][1] - margins[1][0]))
    _, scores = chosen.token_scores(cleaned, 1)
    assert scores.sum() == pytest.approx(change, rel=0.05, abs=1e-3)


def test_explanation_of_a_long_review_covers_only_what_the_model_reads(trained_run) -> None:
    _, chosen = explainer(trained_run, "cnn")  # max_length 40 tokens, head+tail
    text = " ".join(["great"] * 30 + ["plot"] * 200 + ["awful"] * 30)
    words = chosen.explain(text).words
    assert len(words) == 40
    assert {word.text for word in words} == {"great", "awful"}


def test_a_chunked_model_is_explained_window_by_window(trained_run) -> None:
    """chunk: true averages the logits of overlapping windows; the scores average the windows' IG."""
    from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder

    predictor, chosen = explainer(trained_run, "hf")
    model = predictor.model
    model.encoder = HFTokenizerEncoder(model.encoder.tokenizer, max_length=12, chunk=True, chunk_overlap=3)
    _, windows = chosen.inputs(clean_text(TEXT, predictor.config.data.clean))
    assert len(windows) > 1
    explanation = chosen.explain(TEXT)
    for word in explanation.words:
        assert TEXT[word.start : word.end] == word.text
    assert {"great", "awful...", "film!"} <= {word.text for word in explanation.words}
    with torch.no_grad():
        changes = []
        for batch, positions in windows:
            reads_text = torch.tensor([p is not None for p in positions])
            baseline = {**batch, "input_ids": torch.where(reads_text, chosen.baseline_id, batch["input_ids"])}
            logits = [model.network(b).logits[0] for b in (batch, baseline)]
            changes.append(float((logits[0][1] - logits[0][0]) - (logits[1][1] - logits[1][0])))
    total = sum(word.score for word in explanation.words)
    assert total == pytest.approx(np.mean(changes), rel=0.05, abs=1e-3)


@pytest.mark.parametrize("name", ["attention-lstm", "hf", "fasttext"])
def test_unusual_texts_are_explained_without_crashing(trained_run, name) -> None:
    _, chosen = explainer(trained_run, name)
    for text in ("映画はとても良かった", "🎬🍿😍", "<script>x</script> great", "great film " * 10_000):
        for word in chosen.explain(text).words:
            assert text[word.start : word.end] == word.text


@pytest.mark.parametrize("name", ["nbsvm", "cnn", "fasttext"])
def test_a_binary_model_explained_towards_negative_flips_every_sign(trained_run, name) -> None:
    """Two classes: the default target is positive (as ever); negative is the same explanation negated."""
    _, chosen = explainer(trained_run, name)
    towards_positive, towards_negative = chosen.explain(TEXT), chosen.explain(TEXT, 0)
    assert (towards_positive.target, towards_negative.target) == ("positive", "negative")
    assert [w.text for w in towards_positive.words] == [w.text for w in towards_negative.words]
    np.testing.assert_allclose(
        [w.score for w in towards_negative.words], [-w.score for w in towards_positive.words], atol=1e-4
    )


def test_class_score_of_more_than_two_classes() -> None:
    """K > 2: the target's logit against the mean logit (integrated gradients), or its probability
    (occlusion); two classes: the margin towards the target."""
    from types import SimpleNamespace

    from imdb_sentiment.serving.explain import class_score

    logits = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 0.0]])
    network = lambda batch: SimpleNamespace(logits=batch["logits"])  # noqa: E731
    torch.testing.assert_close(class_score(network, {"logits": logits}, 2), torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(
        class_score(network, {"logits": logits}, 0, probability=True), torch.softmax(logits, dim=1)[:, 0]
    )
    binary = torch.tensor([[1.0, 3.0]])
    assert class_score(network, {"logits": binary}, 1).item() == 2.0
    assert class_score(network, {"logits": binary}, 0).item() == -2.0


@pytest.mark.parametrize("name", ["cnn", "hf"])
def test_integrated_gradients_in_units_are_captums(trained_run, name) -> None:
    """The units compute what Captum's LayerIntegratedGradients computes in one call (what explanations
    were before they were cut into units), up to float rounding; between units no hook stays on the
    layer and grad mode is as it was, so other requests' model calls in between are untouched."""
    from captum.attr import LayerIntegratedGradients

    from imdb_sentiment.serving.explain import IG_STEPS, IG_STEPS_PER_UNIT, class_score

    predictor, chosen = explainer(trained_run, name)
    network = predictor.model.network
    for target in (1, 0):
        cleaned = clean_text(TEXT, predictor.config.data.clean)
        spans, [(batch, _)] = chosen.inputs(cleaned)
        reads_text = torch.tensor([span is not None for span in spans])

        def forward(input_ids: torch.Tensor, target: int = target, mask: torch.Tensor = batch["attention_mask"]):
            mask = mask.expand(input_ids.shape[0], -1)
            return class_score(network, {"input_ids": input_ids, "attention_mask": mask}, target)

        baseline = torch.where(reads_text, chosen.baseline_id, batch["input_ids"])
        captum = LayerIntegratedGradients(forward, chosen.layer).attribute(
            batch["input_ids"], baselines=baseline, n_steps=IG_STEPS, internal_batch_size=IG_STEPS
        )
        expected = captum.sum(dim=-1)[0].detach().double().numpy()
        units = chosen.window_score_units(batch, reads_text, target)
        count = 0
        while True:
            try:
                next(units)
            except StopIteration as done:
                scores = done.value
                break
            count += 1
            assert not chosen.layer._forward_hooks and torch.is_grad_enabled()
        assert count == IG_STEPS // IG_STEPS_PER_UNIT
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-7)


def test_a_served_network_explains_on_its_own_copy_and_a_linear_model_on_its_one_model(trained_run) -> None:
    """The explanation thread needs a model no prediction uses (Captum's hooks, the encoder's state);
    a linear model's exact explanation needs no thread."""
    import sys

    from imdb_sentiment.serving.api import served_model_from_run
    from imdb_sentiment.serving.predictor import Predictor

    predictor = Predictor.from_run(trained_run("cnn"))
    served = served_model_from_run(trained_run("cnn"), predictor)
    assert served.explainer_owns_model == (sys.platform == "linux")
    if served.explainer_owns_model:
        assert served.explainer.model is not predictor.model
        assert served.explainer.model.network is not predictor.model.network
        assert served.explainer.model.encoder is not predictor.model.encoder
    assert not served_model_from_run(trained_run("cnn"), predictor, explanation_thread=False).explainer_owns_model
    assert not served_model_from_run(trained_run("nbsvm")).explainer_owns_model
