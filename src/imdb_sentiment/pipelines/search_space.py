"""The ``search:`` section of a tune file: what to vary, on which validation metric, with which sampler.

A tune file is an experiment config with one more top-level section, ``search:``, read here and kept
out of :class:`~imdb_sentiment.config.ExperimentConfig` (trial configs are ordinary configs). With
``search.base`` the file holds only ``search:`` and the experiment is that config (a path, a name under
``configs/`` or a model name), as ``train`` resolves it; the shipped spaces in ``configs/search/`` do so.

Each parameter is a dotted config path (``model.params.C``, ``training.learning_rate``) with a spec:
``float`` (``log`` scale or a ``step``), ``int`` (``step``, ``log``) or ``categorical`` (``choices``),
and optionally ``when``: sampled only if earlier parameters (or the base config) hold the given values,
e.g. ``training.momentum`` only ``when: {training.optimizer: sgd}``. Every bound and choice is checked
against the config schema before any folder exists, each problem one line naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from imdb_sentiment.config import (
    ExperimentConfig,
    StrictModel,
    apply_overrides,
    config_search_paths,
    format_validation_error,
    read_yaml,
)
from imdb_sentiment.data.labels import RATINGS, LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.configure import configure, find_config

Scalar = str | int | float | bool | None
# Validation metrics a trial can be scored on (evaluation/metrics.py::classification_metrics), all maximised:
# every task has accuracy, macro_f1 and roc_auc; two classes f1 / precision / recall (of class 1); ordered
# classes (ratings) within_one.
METRICS = ("accuracy", "macro_f1", "roc_auc", "f1", "precision", "recall", "within_one")
TWO_CLASS_METRICS = ("f1", "precision", "recall")


def metric_problem(metric: str, classes: LabelSpace) -> str | None:
    """Why the task's validation metrics lack ``metric``, in one line naming search.metric; None if they have it."""
    if metric in TWO_CLASS_METRICS and classes.size > 2:
        return (f"search.metric: {metric} is of class 1 of a two-class task; this one has {classes.size} classes: "
                "use macro_f1 (or accuracy).")  # fmt: skip
    if metric == "within_one" and not classes.ordered:
        return "search.metric: within_one needs ordered classes (data.target: rating, or data.ordinal: true)."
    return None


def config_classes(config: ExperimentConfig) -> LabelSpace | None:
    """The classes a config's data section fixes before any data is read: the IMDB star ratings, or the
    classes data.labels lists; None while only the data can tell."""
    if config.data.target == "rating" and config.data.format != "table":
        return RATINGS
    if config.data.labels is not None:
        return LabelSpace(tuple(config.data.labels), ordered=config.data.ordinal)
    return None


class _Param(StrictModel):
    when: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict,
        description="Sample this parameter only when each path holds the value (or one of the values).",
    )


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if self.low >= self.high:
            raise ValueError(f"low {self.low:g} must be below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give log or step, not both (Optuna samples one or the other)")
        return self


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if self.low >= self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("a log scale needs low > 0 and step 1")
        return self


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(StrictModel):
    base: str | None = Field(None, description="The config to tune (path, name under configs/, model name).")
    metric: Literal[METRICS] = Field(  # type: ignore[valid-type]
        "accuracy",
        description="Validation metric to maximise (the test split is never scored in a trial): accuracy, macro_f1, "
        "roc_auc; f1, precision, recall (two classes); within_one (ordered classes).",
    )
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = Field(
        "median", description="Stop loop-trained trials whose per-epoch validation accuracy lags (Optuna)."
    )
    startup_trials: int = Field(5, ge=0, description="Random trials before TPE and the pruner start.")
    fixed: dict[str, Any] = Field(default_factory=dict, description="Overrides every trial shares.")
    params: dict[str, ParamSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _conditions(self) -> SearchSpace:
        seen: list[str] = []
        for path, spec in self.params.items():
            for condition in spec.when:
                if condition == path:
                    raise ValueError(f"params.{path}.when: a parameter cannot depend on itself")
                if condition in self.params and condition not in seen:
                    raise ValueError(f"params.{path}.when: {condition} is declared after it; declare it first")
            seen.append(path)
        return self


def conditions_hold(spec: _Param, values: dict[str, Any]) -> bool:
    for path, wanted in spec.when.items():
        accepted = wanted if isinstance(wanted, list) else [wanted]
        if values.get(path) not in accepted:
            return False
    return True


def config_value(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def hand_set_values(space: SearchSpace, resolved: dict[str, Any]) -> dict[str, Any]:
    """The searched parameters' values in the config as written (``resolved``: the validated config
    with ``fixed`` applied and defaults filled in, as a dict), where they lie in their space and their
    conditions hold: the study's first trial, so that every search is measured against the hand-set
    config on the same validation split. A value outside its space (or unset) is left to the sampler."""
    values: dict[str, Any] = {}
    for path, spec in space.params.items():
        value = config_value(resolved, path)
        if not conditions_hold(spec, {**resolved_paths(resolved, spec), **values}):
            continue
        if isinstance(spec, CategoricalParam):
            inside = value in spec.choices
        elif isinstance(spec, IntParam):
            inside = isinstance(value, int) and not isinstance(value, bool) and spec.low <= value <= spec.high
            inside = inside and (value - spec.low) % spec.step == 0
        else:
            inside = (
                isinstance(value, int | float) and not isinstance(value, bool) and spec.low <= value <= spec.high
            )
            steps = 0.0 if spec.step is None else (value - spec.low) / spec.step
            inside = inside and abs(steps - round(steps)) < 1e-9  # 0.15 / 0.05 is 2.9999999999999996
        if inside:
            values[path] = value
    return values


def resolved_paths(resolved: dict[str, Any], spec: _Param) -> dict[str, Any]:
    """The config's values of the paths ``spec``'s conditions read."""
    return {path: config_value(resolved, path) for path in spec.when}


def as_overrides(values: dict[str, Any]) -> list[str]:
    """``--set``-style overrides (YAML values, so lists and strings survive)."""
    import yaml

    return [f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for path, value in values.items()]  # fmt: skip


class TuneFile:
    """A parsed tune file: the search space and the raw experiment it varies (trial overrides on top)."""

    def __init__(self, space: SearchSpace, raw: dict[str, Any], source: str) -> None:
        self.space, self.raw, self.source = space, raw, source

    def trial_config(self, values: dict[str, Any], extra: list[str] | None = None) -> ExperimentConfig:
        overrides = as_overrides(self.space.fixed) + as_overrides(values) + (extra or [])
        return configure(self.raw, overrides)  # the configure step of train: raw is never modified

    def resolved(self, extra: list[str]) -> dict[str, Any]:
        """The raw experiment with ``fixed`` and ``extra`` applied: what conditions are checked against."""
        import copy

        return apply_overrides(copy.deepcopy(self.raw), as_overrides(self.space.fixed) + extra)


def load_tune_file(config_or_model: str) -> TuneFile:
    """A tune YAML (a config with ``search:``), or a name: ``configs/search/<name>.yaml`` first."""
    path = Path(config_or_model)
    if path.suffix not in (".yaml", ".yml") and not path.is_file():
        found = [folder / "search" / f"{config_or_model}.yaml" for folder in config_search_paths()]
        found = [candidate for candidate in found if candidate.is_file()]
        if not found:
            raise UserError(f"{config_or_model!r}: no configs/search/{config_or_model}.yaml; pass a tune YAML "
                            "file (a config with a search: section).")  # fmt: skip
        path = found[0]
    raw = read_yaml(path)
    if "search" not in raw:
        raise UserError(f"{path}: no search: section; add one (see configs/search/ for examples).")
    try:
        space = SearchSpace.model_validate(raw.pop("search"))
    except ValidationError as exc:
        raise UserError(f"{path}: {format_validation_error(exc, prefix='search')}") from None
    if space.base is not None:
        if raw:
            raise UserError(f"{path}: search.base is set, so the file holds only search: (found {', '.join(raw)})")
        raw = _base_raw(space.base)
    return TuneFile(space, raw, str(path))


def _base_raw(base: str) -> dict[str, Any]:
    try:
        return find_config(base)
    except UserError as exc:
        raise UserError(f"search.base: {exc}") from None


def check_space(tune: TuneFile, extra: list[str]) -> None:
    """Every bound and choice, one at a time, must make a valid config (with the ``when`` values it
    depends on): a bad range is found now, not in trial 17. Refuses a model that trains on the
    validation split, since the search scores on it."""
    base = tune.trial_config({}, extra)
    _check_validation_held_out(base)
    if (classes := config_classes(base)) is not None and (problem := metric_problem(tune.space.metric, classes)):
        raise UserError(problem)
    for path, spec in tune.space.params.items():
        candidates = list(spec.choices) if isinstance(spec, CategoricalParam) else [spec.low, spec.high]
        for value in candidates:
            given = {cond: (want[0] if isinstance(want, list) else want) for cond, want in spec.when.items()}
            try:
                config = tune.trial_config({**given, path: value}, extra)
            except UserError as exc:
                raise UserError(f"search.params.{path}: {value!r} makes an invalid config: "
                                f"{str(exc).removeprefix('Invalid config: ')}") from None  # fmt: skip
            _check_validation_held_out(config)


def _check_validation_held_out(config: ExperimentConfig) -> None:
    if config.model.params.get("refit_on_train_and_valid"):
        raise UserError(
            "model.params.refit_on_train_and_valid: true refits on the validation split the search scores "
            "on; set it false in search.fixed (best.yaml keeps the tuned settings)."
        )
