"""Benchmark suites: a YAML list of experiment configs, expanded over seeds and training-set sizes.

A suite (``configs/suites/<name>.yaml`` or any YAML file) names its rows; ``--seeds`` and
``--train-sizes`` (or the suite's own ``seeds`` / ``train_sizes``, or a row's ``train_sizes``) turn each
row into a grid of runs; ``--train-sizes`` sets every row's.
Every run gets a fixed folder name under the output folder, so a re-run finds the runs that finished
and skips them: an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from imdb_sentiment.config import (
    DataConfig,
    ExperimentConfig,
    StrictModel,
    config_search_paths,
    format_validation_error,
    load_yaml_text,
)
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.configure import load_config

TrainSize = int | Literal["full"]
# The layouts data.format accepts, taken from its field so that a new layout is accepted here too.
DataFormat = DataConfig.model_fields["format"].annotation
Vary = Literal["both", "init", "data"]
VARY_MEANING = {
    "both": "each seed changes both the initialisation and the data sample (validation split, subsets)",
    "init": "each seed changes the initialisation only; the data sample is fixed",
    "data": "each seed changes the data sample (validation split, subsets) only; the initialisation is fixed",
}


class WriteupReference(StrictModel):
    """What the write-up this project grew out of reported for the row (accuracies in [0, 1])."""

    row: str = Field(description="The write-up's name for the row.")
    claimed: float | None = Field(None, ge=0, le=1, description="Accuracy its tables claim.")
    kaggle: float | None = Field(
        None, ge=0, le=1, description="Its published Kaggle submission file scored on the official test labels."
    )


class OutOfDomainSet(StrictModel):
    """A labelled set from another domain that every run of the suite is also scored on (the
    leaderboard's "out of domain" column). The default is MR (Pang & Lee's movie-review sentences). A run
    on other classes than the set's (star ratings against MR's sentiment) is not scored on it; its
    analysis.json says why (``out_of_domain_skipped``)."""

    name: str = Field("MR", min_length=1, description="What the report calls the set.")
    path: str | None = Field(
        None, description="Its folder or file; default: a folder 'mr' beside the data folder, used when there."
    )
    format: DataFormat = Field("mr", description="Its layout, as data.format; its test part is scored.")

    @model_validator(mode="after")
    def _path_for_other_layouts(self) -> OutOfDomainSet:
        if self.path is None and self.format != "mr":
            raise ValueError("path: give the folder or file of an out-of-domain set that is not MR")
        return self


class SuiteRow(StrictModel):
    config: str = Field(description="A YAML config, a name under configs/, or a model name.")
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", description="Row name (default: the run name)."
    )
    set: list[str] = Field(default_factory=list, description="Overrides, as with --set.")
    gpu_only: bool = Field(False, description="Needs a GPU to finish in reasonable time; skipped on a CPU.")
    train_sizes: list[TrainSize] | None = Field(
        None,
        min_length=1,
        description="This row's training sizes, where its cost or purpose differs from "
        "the suite's (e.g. an LLM fine-tuned only at 64-1,024 labels); default: the suite's (or --train-sizes).",
    )
    writeup: WriteupReference | None = None

    @field_validator("train_sizes")
    @classmethod
    def _sizes(cls, sizes: list[TrainSize] | None) -> list[TrainSize] | None:
        return None if sizes is None else _checked_sizes(sizes)


class Suite(StrictModel):
    name: str
    description: str = ""
    rows: list[SuiteRow] = Field(min_length=1)
    seeds: int = Field(1, ge=1, le=50)
    train_sizes: list[TrainSize] = Field(default_factory=lambda: ["full"], min_length=1)
    vary: Vary = "both"
    out_of_domain: OutOfDomainSet | None = Field(
        default_factory=OutOfDomainSet, description="Scored by every run as well; null: none."
    )

    @field_validator("train_sizes")
    @classmethod
    def _sizes(cls, sizes: list[TrainSize]) -> list[TrainSize]:
        return _checked_sizes(sizes)


def _checked_sizes(sizes: list[TrainSize]) -> list[TrainSize]:
    if any(isinstance(size, int) and size < 4 for size in sizes):
        raise ValueError("every train size must be at least 4 reviews (or 'full')")
    if len(set(sizes)) != len(sizes):
        raise ValueError("train sizes repeat")
    return sizes


@dataclass(frozen=True)
class PlannedRun:
    row: SuiteRow
    label: str  # the row's name, shared by all its seeds and sizes
    seed_index: int
    train_size: TrainSize
    config: ExperimentConfig
    run_dir: Path


def parse_train_sizes(text: str) -> list[TrainSize]:
    """``16,64,256,full`` -> [16, 64, 256, 'full']."""
    sizes: list[TrainSize] = []
    for item in (part.strip() for part in text.split(",")):
        if item == "full":
            sizes.append("full")
        elif item.isdigit() and int(item) >= 4:
            sizes.append(int(item))
        else:
            raise UserError(f"--train-sizes: {item!r} is neither a number of reviews (>= 4) nor 'full'.")
    if not sizes or len(set(sizes)) != len(sizes):
        raise UserError("--train-sizes: give distinct sizes, e.g. 16,64,256,1024,4096,full.")
    return sizes


def find_suite_file(name: str) -> Path:
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise UserError(f"Suite file {candidate} does not exist.")
        return candidate
    for folder in config_search_paths():
        path = folder / "suites" / f"{name}.yaml"
        if path.is_file():
            return path
    known = sorted({p.stem for folder in config_search_paths() for p in (folder / "suites").glob("*.yaml")})
    raise UserError(f"No suite {name!r}. Suites: {', '.join(known) or 'none found'}; or pass a YAML file.")


def load_suite(name: str) -> Suite:
    path = find_suite_file(name)
    try:
        raw = load_yaml_text(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"Cannot read suite {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"Suite {path} must be a mapping with 'rows:'.")
    raw.setdefault("name", path.stem)
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"suite {path}: " + format_validation_error(exc, "suite")) from None


def suite_from_models(names: list[str]) -> Suite:
    """The ``--models a,b`` shorthand: a suite with one plain row per name."""
    return Suite(name="models", rows=[SuiteRow(config=name) for name in names])


def expand_suite(
    suite: Suite,
    overrides: list[str],
    output_dir: Path,
    include_gpu_rows: bool,
    gpu_available: bool,
) -> tuple[list[PlannedRun], list[tuple[SuiteRow, str]]]:
    """Every run of the suite with its validated config (all validated before anything trains), and
    the rows skipped with the reason. A bad row is a UserError naming the row."""
    planned: list[PlannedRun] = []
    skipped: list[tuple[SuiteRow, str]] = []
    labels: set[str] = set()
    checked: set[Hashable] = set()  # machine checks passed: a server is asked once, not once per run
    for number, row in enumerate(suite.rows, start=1):
        if row.gpu_only and not (gpu_available or include_gpu_rows):
            skipped.append((row, "GPU only: no GPU here (--include-gpu-rows runs it anyway)"))
            continue
        where = f"suite row {number} ({row.config})"
        base = _load(row.config, [*row.set, *overrides], where, checked)
        label = row.name or base.run_name
        if label in labels:
            raise UserError(f"{where}: the row name {label!r} repeats; give the row a distinct 'name:'.")
        labels.add(label)
        sizes = row.train_sizes or suite.train_sizes
        for seed_index in range(suite.seeds):
            for size in sizes:
                run_name = label + (f"-n{size}" if len(sizes) > 1 or size != "full" else "")
                run_name += f"-s{seed_index}" if suite.seeds > 1 else ""
                extra = _seed_overrides(base, suite.vary, seed_index)
                extra += [f"data.limit={size}"] if size != "full" else []  # full: the row's own training set
                extra += [f"name={json.dumps(run_name)}", f"output_dir={json.dumps(str(output_dir))}"]
                config = _load(row.config, [*row.set, *overrides, *extra], where, checked)
                planned.append(PlannedRun(row, label, seed_index, size, config, output_dir / run_name))
    return planned, skipped


def _seed_overrides(base: ExperimentConfig, vary: Vary, seed_index: int) -> list[str]:
    if seed_index == 0 and vary == "both":
        return []
    seed = base.seed + (seed_index if vary in ("both", "init") else 0)
    data_seed = base.data.seed + (seed_index if vary in ("both", "data") else 0)
    return [f"seed={seed}", f"data.seed={data_seed}"]


def _load(config: str, overrides: list[str], where: str, checked: set[Hashable]) -> ExperimentConfig:
    try:
        return load_config(config, overrides, checked=checked)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
