"""The contract every registered model keeps, as named checks (scikit-learn's ``check_estimator`` idea).

:func:`model_checks` yields ``(name, check)`` pairs for one model class, chosen by its
:class:`~imdb_sentiment.models.base.Capabilities`; each ``check(case)`` raises ``AssertionError`` on a
breach. A :class:`CheckCase` holds one small fitted model and the data it saw, so a test suite fits each
model once and runs every check on it (``tests/test_conformance.py`` does exactly that). A new model, an
ensemble or an LLM client joins by being registered with truthful capabilities, without special cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.models.base import Capabilities, FitContext, SentimentModel


@dataclass
class CheckCase:
    """A model fitted on ``train`` / ``valid`` with ``context`` (run folder under ``workdir``)."""

    model: SentimentModel
    fitted: object  # what fit() returned
    context: FitContext
    train: TextDataset
    valid: TextDataset
    test: TextDataset
    workdir: Path


Check = Callable[[CheckCase], None]


def check_unknown_params_are_refused(case: CheckCase) -> None:
    from pydantic import ValidationError

    try:
        type(case.model).Params.model_validate({"no_such_setting": 1})
    except ValidationError:
        return
    raise AssertionError("Params accepted an unknown field; model params must forbid extras")


def check_fit_returns_self(case: CheckCase) -> None:
    assert case.fitted is case.model, "fit() must return the model itself"


def check_learns_the_classes(case: CheckCase) -> None:
    """The model's classes are its training split's, in order."""
    assert case.model.classes == case.train.classes, (case.model.classes, case.train.classes)


def check_predict_proba_is_a_distribution(case: CheckCase) -> None:
    probabilities = case.model.predict_proba(case.test.texts)
    assert probabilities.shape == (len(case.test), case.train.classes.size), probabilities.shape
    assert np.isfinite(probabilities).all()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    empty = case.model.predict_proba([])
    assert empty.shape == (0, case.train.classes.size), f"no texts: {empty.shape}, not (0, K)"


def check_predict_is_argmax(case: CheckCase) -> None:
    probabilities = case.model.predict_proba(case.test.texts)
    assert case.model.predict(case.test.texts).tolist() == probabilities.argmax(1).tolist()


def check_predictions_do_not_depend_on_batching(case: CheckCase) -> None:
    """Batch size and neighbours (hence padding) never change a review's prediction."""
    whole = case.model.predict_proba(case.test.texts, batch_size=len(case.test))
    one_by_one = np.concatenate([case.model.predict_proba([text], batch_size=1) for text in case.test.texts])
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-4, atol=1e-4)


def check_counts_parameters(case: CheckCase) -> None:
    assert case.model.num_parameters() > 0


def check_save_load_round_trip(case: CheckCase) -> None:
    folder = case.workdir / "saved"
    case.model.save(folder)
    loaded = SentimentModel.load(folder)
    assert type(loaded) is type(case.model)
    assert loaded.classes == case.model.classes
    np.testing.assert_allclose(
        loaded.predict_proba(case.test.texts), case.model.predict_proba(case.test.texts), rtol=1e-4, atol=1e-5
    )


def check_records_training_history(case: CheckCase) -> None:
    history = case.context.history
    assert history, "the shared loop records one row per epoch"
    assert all(math.isfinite(row["train_loss"]) for row in history)
    assert "valid_accuracy" in case.context.extra_metrics


def check_resume_of_a_finished_run_trains_nothing_more(case: CheckCase) -> None:
    """Resuming from the run folder's checkpoints restores the fit instead of starting over."""
    context = FitContext(
        training=case.context.training, seed=case.context.seed, run_dir=case.context.run_dir, resume=True,
        show_progress=False,
    )  # fmt: skip
    resumed = type(case.model)(case.model.params).fit(case.train, case.valid, context)
    assert [row["step"] for row in context.history] == [row["step"] for row in case.context.history]
    np.testing.assert_allclose(
        resumed.predict_proba(case.test.texts), case.model.predict_proba(case.test.texts), rtol=1e-4, atol=1e-5
    )


CHECKS: list[tuple[str, Check, Callable[[Capabilities], bool]]] = [
    ("unknown_params_are_refused", check_unknown_params_are_refused, lambda can: True),
    ("fit_returns_self", check_fit_returns_self, lambda can: True),
    ("learns_the_classes", check_learns_the_classes, lambda can: True),
    ("predict_proba_is_a_distribution", check_predict_proba_is_a_distribution, lambda can: True),
    ("predict_is_argmax", check_predict_is_argmax, lambda can: True),
    ("predictions_do_not_depend_on_batching", check_predictions_do_not_depend_on_batching, lambda can: True),
    ("counts_parameters", check_counts_parameters, lambda can: not can.remote),
    ("save_load_round_trip", check_save_load_round_trip, lambda can: can.weights_on_disk),
    ("records_training_history", check_records_training_history, lambda can: can.trains_with_loop),
    ("resume_of_a_finished_run", check_resume_of_a_finished_run_trains_nothing_more,
     lambda can: can.supports_resume),
]  # fmt: skip


# What a task of three or more classes must also keep: outputs, and the classes through save / load. The
# training-loop checks (history, resume) do not depend on the number of classes.
MULTICLASS_CHECKS = ("fit_returns_self", "learns_the_classes", "predict_proba_is_a_distribution",
                     "predict_is_argmax", "predictions_do_not_depend_on_batching", "save_load_round_trip")  # fmt: skip


def model_checks(model_class: type[SentimentModel], multiclass: bool = False) -> Iterator[tuple[str, Check]]:
    """The named checks that apply to ``model_class``, by its capabilities; ``multiclass``: those of a
    fit on three or more classes."""
    for name, check, applies in CHECKS:
        if applies(model_class.capabilities) and (not multiclass or name in MULTICLASS_CHECKS):
            yield name, check
