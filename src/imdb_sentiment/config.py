"""Typed, validated experiment configuration.

Every experiment is one YAML file (see ``configs/``) that parses into :class:`ExperimentConfig`.
Validation happens before any data is read or any model is built, and every problem is reported on
one line that names the offending field (``training.learning_rate: ...``).

This module is the schema only: it imports nothing from ``models/`` or ``training/`` and does no
file or network I/O while validating. :func:`imdb_sentiment.models.configure.configure` is the one
way to a config: it applies overrides, fills in the model's parameters and defaults, validates with
this schema, then runs the model's checks, the objective check and (for a new run) the device and
machine checks, so no problem is found after a run folder exists.

YAML is read with a bound on alias expansion (:func:`load_yaml_text`), numbers must be finite, and a
validation message quotes at most a short excerpt of what was given.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imdb_sentiment.errors import UserError


class StrictModel(BaseModel):
    """Base for config sections: unknown fields are errors, and a validated config is never changed."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, protected_namespaces=())


class CleaningConfig(StrictModel):
    """Text cleaning applied when a dataset is loaded (IMDB reviews contain raw HTML)."""

    html_breaks: bool = Field(True, description="Replace <br /> tags with a space.")
    html_tags: bool = Field(True, description="Remove any other HTML tags.")
    html_entities: bool = Field(True, description="Decode entities such as &amp; and &#39;.")
    whitespace: bool = Field(True, description="Collapse runs of whitespace and strip the ends.")
    lowercase: bool = Field(False, description="Lower-case everything (word models lower-case anyway).")


class DataConfig(StrictModel):
    path: str | None = Field(
        None, description="Dataset location. Default: $IMDB_SENTIMENT_DATA, else the download cache."
    )
    format: Literal["auto", "imdb-parquet", "aclimdb", "aclimdb-archive", "kaggle", "mr", "table"] = "auto"
    test_path: str | None = Field(None, description="Separate test file for a user table.")
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    target: Literal["sentiment", "rating"] = Field(
        "sentiment",
        description="What the IMDB layouts label: sentiment (2 classes) or rating (8 classes: 1-4 and 7-10 "
        "stars, ordered). A table's classes are its label column's distinct values.",
    )
    labels: list[str] | None = Field(
        None,
        min_length=2,
        max_length=1000,
        description="The classes of a table, in this order (default: sentiment when the labels spell it, "
        "else numeric or alphabetical order).",
    )
    ordinal: bool = Field(
        False, description="A table's labels are ordered (ratings): adds mean absolute error and within-one."
    )
    encoding: str | None = Field(None, description="Text encoding; default utf-8 (latin-1 for MR).")
    clean: CleaningConfig = Field(default_factory=CleaningConfig)
    seed: int = Field(
        42,
        ge=0,
        le=2**32 - 1,
        description="Seed of the validation split and of the limit / test_limit subsamples. Default: the "
        "experiment's seed; vary it apart from seed to separate data-sample from initialisation variance.",
    )
    valid_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="Validation split carved from train.")
    test_fraction: float = Field(
        0.2, gt=0.0, lt=0.9, description="Test split carved from a user table that has no test file."
    )
    limit: int | None = Field(
        None,
        ge=4,
        description="Stratified, seeded subsample of the training data; nested: for one seed the smaller "
        "subsample lies inside the larger (learning curves).",
    )
    test_limit: int | None = Field(None, ge=2, description="Evaluate on a stratified test subsample.")
    use_unsup: bool = Field(True, description="Let models use unlabeled reviews (word2vec, MLM).")

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            names = [name.strip() for name in value]
            if any(not name for name in names) or len(set(names)) != len(names):
                raise ValueError("list two or more distinct, non-empty class names")
            return names
        return value


class ObjectiveConfig(StrictModel):
    name: str = Field(
        "cross-entropy",
        description="A registered objective: cross-entropy, r-drop, supcon (checked by configure).",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    rdrop_alpha: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="Weight of the symmetric KL term against the MEAN of the two cross-entropies; "
        "Liang et al. sum them, so their alpha is twice this value.",
    )
    supcon_temperature: float = Field(0.1, gt=0.0, le=10.0)
    supcon_weight: float = Field(0.5, ge=0.0, le=10.0, description="Weight of the contrastive term.")


# Learning rates outside these bounds are almost surely mistakes (the write-up used 0.8).
SANE_LEARNING_RATES = {"adamw": (1e-7, 0.05), "sgd": (1e-5, 0.5)}


class TrainingConfig(StrictModel):
    backend: str = Field(
        "native",
        description="A training backend (training/backends.py): native (the project's own loop) or "
        "trainer (Hugging Face Trainer, hf models only).",
    )
    epochs: int = Field(3, ge=1, le=1000)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(32, ge=1, le=65536)
    eval_batch_size: int = Field(128, ge=1, le=65536)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    optimizer_kernel: Literal["auto", "fused", "foreach", "for-loop"] = Field(
        "auto",
        description="How the optimizer updates parameters: auto (fused where torch has the kernel), fused "
        "(one kernel for all tensors), foreach (batched per step), for-loop (one tensor at a time).",
    )
    scheduler: Literal["constant", "linear", "cosine"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    grad_accum_steps: int = Field(1, ge=1, le=1024)
    early_stopping_patience: int | None = Field(2, ge=1)
    precision: Literal["auto", "fp32", "bf16", "native-bf16"] = Field(
        "auto",
        description="auto: bf16 autocast on CUDA, fp32 on CPU. native-bf16: bf16 wherever the hardware runs it "
        "natively (CUDA, CPUs with AMX / AVX-512-BF16), else fp32 (emulated bf16 on an AVX2 CPU is several "
        "times slower than fp32). bf16: always.",
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    length_bucketing: bool = Field(True, description="Group batches by length to cut padding.")
    layerwise_lr_decay: float | None = Field(None, gt=0.0, le=1.0)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    log_every_steps: int = Field(50, ge=1)
    checkpoint_every_steps: int | None = Field(
        None,
        ge=1,
        description="Also write a resume checkpoint every N optimizer steps (a pre-empted or killed job "
        "loses at most N steps); default: at epoch ends only. SIGTERM always writes one before stopping.",
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores).")

    @field_validator("learning_rate")
    @classmethod
    def _check_learning_rate(cls, value: float, info: ValidationInfo) -> float:
        optimizer = info.data.get("optimizer", "adamw")
        low, high = SANE_LEARNING_RATES[optimizer]
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside the sane range [{low:g}, {high:g}] for {optimizer}")
        return value


class ModelConfig(StrictModel):
    name: str = Field("nbsvm", description="A registered model (imdb-sentiment models).")
    params: dict[str, Any] = Field(default_factory=dict, description="Model-specific settings.")


class ExperimentConfig(StrictModel):
    name: str | None = Field(None, description="Run name; default: the model name.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Initialisation seed (and data.seed's default).")
    output_dir: str = "runs"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, raw: Any) -> Any:
        """``data.seed`` defaults to ``seed`` (only when the config leaves it out). The model's own
        parameters and defaults are filled in by the configure step before this schema sees them."""
        if not isinstance(raw, dict):
            return raw
        raw = {key: _plain(value) for key, value in raw.items()}
        data = raw.get("data")
        if data is None or isinstance(data, dict):
            raw["data"] = {"seed": raw.get("seed", cls.model_fields["seed"].default), **(data or {})}
        return raw

    @property
    def run_name(self) -> str:
        return self.name or self.model.name


def _plain(value: Any) -> Any:
    """A section given as a model object (programmatic use) becomes the dict it was written as."""
    return value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value


# What a message quotes of the input: a few items and characters, never the whole (possibly huge) value.
_EXCERPT = reprlib.Repr()  # (Python 3.11's Repr takes no keyword arguments)
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother, _EXCERPT.maxlong = 2, 60, 60, 40
_EXCERPT.maxtuple = _EXCERPT.maxlist = _EXCERPT.maxdict = _EXCERPT.maxset = 4
MAX_EXCERPT = 100  # characters
MAX_PROBLEMS = 5  # problems listed in one message; the rest are counted


def excerpt(value: Any) -> str:
    """A short repr of any value (bounded work and length, however large or nested the value is)."""
    text = _EXCERPT.repr(value)
    return text if len(text) <= MAX_EXCERPT else text[: MAX_EXCERPT - 3] + "..."


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic error into one line: each problem (at most ``MAX_PROBLEMS``) naming its field."""
    parts = []
    errors = exc.errors()
    for error in errors[:MAX_PROBLEMS]:
        location = ".".join(str(item) for item in (prefix, *error["loc"]) if item != "")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see the documented fields)"
        elif (
            "input" in error
            and error["type"] != "missing"
            and not isinstance(error["input"], dict)
            and excerpt(error["input"]).strip("'") not in message
        ):
            message += f" (got {excerpt(error['input'])})"
        parts.append(f"{location}: {message}" if location else message)
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more problem(s)")
    return "; ".join(parts)


# A config or suite holds hundreds of values; YAML aliases can make a 1 KB file expand to billions
# (a "billion laughs" file), which would hang whatever walks it. Past this many values it is refused.
MAX_YAML_VALUES = 100_000


class YAMLTooLarge(yaml.YAMLError):
    """YAML whose aliases expand beyond ``MAX_YAML_VALUES`` values, or that nests beyond Python's stack."""


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` with a bound on what aliases expand to, checked on the composed node graph
    (shared nodes counted once per use, each node visited once) before anything is constructed."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_size(node, {})
        if values > MAX_YAML_VALUES:
            raise YAMLTooLarge(
                f"its aliases expand to {values:,} values (more than {MAX_YAML_VALUES:,}); write it out "
                "without anchors and aliases"
            )
        return loader.construct_document(node)
    except RecursionError:
        raise YAMLTooLarge("it nests too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4,300-digit conversion limit
        raise YAMLTooLarge(f"a value cannot be read ({excerpt(str(exc))})") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    if id(node) not in sizes:
        if isinstance(node, yaml.SequenceNode):
            sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            sizes[id(node)] = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
        else:
            sizes[id(node)] = 1
    return sizes[id(node)]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``training.learning_rate=3e-4`` into (["training", "learning_rate"], 0.0003)."""
    if "=" not in text:
        raise UserError(f"Override {excerpt(text)} must look like section.field=value, e.g. training.epochs=2.")
    key, raw_value = text.split("=", 1)
    keys = [part for part in key.strip().split(".") if part]
    if not keys:
        raise UserError(f"Override {excerpt(text)} has no field name before '='.")
    try:
        value = load_yaml_text(raw_value) if raw_value.strip() else None
    except YAMLTooLarge as exc:
        raise UserError(f"Override {'.'.join(keys)}: {exc}.") from None
    except yaml.YAMLError:
        value = raw_value
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.field=value`` overrides to ``raw`` in place (the caller passes a copy)."""
    for override in overrides:
        keys, value = parse_override(override)
        node = raw
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise UserError(f"Override {excerpt(override)}: {key} is a value, not a section.")
            node = child
        node[keys[-1]] = value
    return raw


def validated(schema: type[BaseModel], raw: Any, prefix: str = "", lead: str = "") -> Any:
    """``schema.model_validate(raw)``, or one UserError line naming each bad field under ``prefix``."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise UserError(lead + format_validation_error(exc, prefix)) from None


def build_data_config(raw: dict[str, Any]) -> DataConfig:
    """A validated data section on its own (command-line options of evaluate / data stats); a bad
    value is a UserError naming the field, e.g. ``data.format``."""
    return validated(DataConfig, raw, "data")


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Config file {path} does not exist. Pass a YAML file or a model name.")
    try:
        raw = load_yaml_text(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise UserError(f"Config file {path} is not valid YAML: {exc}. Save it as UTF-8.") from None
    except YAMLTooLarge as exc:
        raise UserError(f"Config file {path} is refused: {exc}.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"Config file {path} is not valid YAML: {describe_yaml_error(exc)}.") from None
    if not isinstance(raw, dict):
        raise UserError(f"Config file {path} must hold a mapping of sections (model, data, training).")
    return raw


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """Where and what, in one line (yaml's own message spans several)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}"  # yaml counts from 0
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        problem += f" ({context} started at line {context_mark.line + 1}, column {context_mark.column + 1})"
    if "'\\t'" in problem:
        problem += "; YAML indents with spaces, not tabs"
    return f"{where}: {problem}"


def config_search_paths() -> list[Path]:
    """``./configs`` and the repository's ``configs/`` (for editable installs)."""
    repo_configs = Path(__file__).resolve().parents[2] / "configs"
    return [Path.cwd() / "configs", repo_configs]


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
