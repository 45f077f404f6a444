"""The configure step: the one way from a written config (plus ``--set`` overrides) to a validated
:class:`~imdb_sentiment.config.ExperimentConfig`.

1. apply the overrides (to a copy);
2. fill in the model's ``Params`` with their defaults, and the defaults the model gives other sections
   (``SentimentModel.config_defaults``);
3. validate with the schema (:mod:`imdb_sentiment.config`, pure: no registry, no I/O);
4. run the model's cross-field checks (``check_config``) and the objective check;
5. for a new run (``for_training=True``) check this machine: the torch devices the run will use, then
   ``check_runnable`` (folders, hub, a server), each distinct ``runnable_key`` once per ``checked`` set.

Every problem is a :class:`UserError` of one line naming the field, raised before data is read or a
run folder exists. A finished run's config loads with ``for_training=False`` (no machine checks).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from imdb_sentiment.config import (
    ExperimentConfig,
    ModelConfig,
    apply_overrides,
    config_search_paths,
    excerpt,
    read_yaml,
    validated,
)
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.models.registry import available_models, get_model_class

# What `train --resume` may change: how the run goes on, never what the checkpoint already is.
RESUMABLE_SECTIONS = ("training", "output_dir", "name")


def configure(
    raw: dict[str, Any],
    overrides: list[str] | None = None,
    for_training: bool = True,
    checked: set[Hashable] | None = None,
) -> ExperimentConfig:
    """Validate ``raw`` (never modified) with ``overrides``. ``checked``: the machine checks already
    passed in this command (a suite passes one set for all its runs: a server is asked once)."""
    raw = apply_overrides(copy.deepcopy(dict(raw)), overrides or [])
    model_class, params = _fill_model(raw)
    config = validated(ExperimentConfig, raw, lead="Invalid config: ")
    model_class.check_config(config, params)
    check_objective(config.training.objective.name, "training.objective.name")
    if for_training:
        for field, device in model_class.torch_devices(config, params).items():
            check_device(device, field)
        key = model_class.runnable_key(config, params)
        if checked is None or key is None or (model_class.name, key) not in checked:
            model_class.check_runnable(config, params)
            if checked is not None and key is not None:
                checked.add((model_class.name, key))
    return config


def _fill_model(raw: dict[str, Any]) -> tuple[type[SentimentModel], Any]:
    """Complete ``raw`` in place: the model's validated params, and its defaults for other sections
    (only keys the config leaves out)."""
    model = raw.get("model")
    if isinstance(model, BaseModel):  # a section given as a model object (programmatic use)
        model = model.model_dump(exclude_unset=True)
    model = raw["model"] = {} if model is None else model
    if not isinstance(model, dict):
        validated(ExperimentConfig, raw, lead="Invalid config: ")  # names the field: model
    name = model.get("name", ModelConfig.model_fields["name"].default)
    if not isinstance(name, str):
        raise UserError(f"Invalid config: model.name: give a registered model's name (got {excerpt(name)}).")
    model_class = get_model_class(name)
    params = validated(model_class.Params, model.get("params") or {}, "model.params", lead="Invalid config: ")
    model["params"] = params.model_dump(mode="json")
    for section, defaults in model_class.config_defaults(params).items():
        given = raw.get(section)
        raw[section] = (
            {**defaults, **given} if isinstance(given, dict) else given if given is not None else defaults
        )
    return model_class, params


def check_objective(name: str, field: str) -> None:
    from imdb_sentiment.training.objectives import OBJECTIVES  # here, not above: it imports torch

    if name not in OBJECTIVES:
        raise UserError(f"{field}: unknown objective {name!r}; registered: {', '.join(OBJECTIVES)}.")


def check_device(name: str, field: str = "training.device") -> None:
    """The device exists on this machine (torch is imported only to look for a GPU)."""
    if name in ("auto", "cpu"):
        return
    from imdb_sentiment.training.runtime import parse_device

    try:
        parse_device(name)
    except UserError as exc:
        raise UserError(f"{field}: {str(exc).removeprefix('training.device: ')}") from None


def load_config(
    config_or_model: str, overrides: list[str] | None = None, checked: set[Hashable] | None = None
) -> ExperimentConfig:
    """Resolve a YAML path, a name under ``configs/``, or a registered model name into a config."""
    return configure(find_config(config_or_model), overrides, checked=checked)


def find_config(config_or_model: str) -> dict[str, Any]:
    """The raw config a YAML path, a name under ``configs/`` or a registered model name stands for."""
    candidate = Path(config_or_model)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return read_yaml(candidate)
    for folder in config_search_paths():
        path = folder / f"{config_or_model}.yaml"
        if path.is_file():
            return read_yaml(path)
    if config_or_model in available_models():
        return {"model": {"name": config_or_model}}
    raise UserError(
        f"{config_or_model!r} is neither a config file nor a registered model. "
        f"Models: {', '.join(available_models())}."
    )


def resume_config(run_dir: Path, overrides: list[str], config_or_model: str | None = None) -> ExperimentConfig:
    """The config to resume ``run_dir`` with: its own, changed only where a resume may change it (the
    training section: more epochs, another device). Anything else (the model's shape, the data, the
    seed) would not match the checkpoint: refused before anything is touched. ``config_or_model``
    (``train MODEL --resume RUN``) must name the run's own model."""
    raw = read_yaml(run_dir / "config.yaml")
    stored = configure(raw, for_training=False)
    if config_or_model is not None:
        given = configure(find_config(config_or_model), overrides, for_training=False)
        if given.model != stored.model:
            field, theirs, ours = _first_difference(
                stored.model.model_dump(mode="json"), given.model.model_dump(mode="json"), "model"
            )
            raise UserError(
                f"--resume {run_dir}: {config_or_model!r} is not this run's model ({field} {excerpt(ours)}, the "
                f"run's {excerpt(theirs)}); drop {config_or_model!r} to resume the run as it was."
            )
    resumed = configure(raw, overrides)
    before, after = stored.model_dump(mode="json"), resumed.model_dump(mode="json")
    for section in before:
        if section in RESUMABLE_SECTIONS or before[section] == after[section]:
            continue
        field, old, new = _first_difference(before[section], after[section], section)
        raise UserError(
            f"--resume {run_dir}: {field} cannot change on resume ({excerpt(old)} -> {excerpt(new)}): the "
            "checkpoint holds the run as it was. Resume without it, or start a new run."
        )
    return resumed


def _first_difference(old: Any, new: Any, path: str) -> tuple[str, Any, Any]:
    """(dotted field, old value, new value) of the first place two plain values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}")
    return path, old, new
