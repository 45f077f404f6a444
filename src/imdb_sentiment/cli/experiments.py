"""Commands that define and run experiments: train, benchmark, models, show-config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imdb_sentiment.cli.app import (
    DataOption,
    EncodingOption,
    FormatOption,
    LabelColumnOption,
    LimitOption,
    SeedOption,
    SetOption,
    TestLimitOption,
    TextColumnOption,
    app,
    console,
    data_overrides,
    print_metrics,
    setup_logging,
    yaml_scalar,
)
from imdb_sentiment.errors import UserError


@app.command()
def train(
    config: Annotated[
        str, typer.Argument(help="A YAML config, a name under configs/, or a model name.")
    ] = "nbsvm",
    data: DataOption = None,
    format: FormatOption = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    encoding: EncodingOption = None,
    limit: LimitOption = None,
    test_limit: TestLimitOption = None,
    epochs: Annotated[int | None, typer.Option(min=1, max=1000, help="Shortcut for training.epochs.")] = None,
    seed: SeedOption = None,
    output_dir: Annotated[str | None, typer.Option(help="Where run folders go (default runs/).")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: model name).")] = None,
    set_: SetOption = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue an interrupted run folder from its last checkpoint.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Train a model, evaluate it on the full test set and write a run folder."""
    from imdb_sentiment.config import build_config, load_config, read_yaml
    from imdb_sentiment.pipelines.experiment import run_experiment

    overrides = data_overrides(data, format, text_column, label_column, encoding, limit, test_limit)
    overrides += [f"training.epochs={epochs}"] if epochs is not None else []
    overrides += [f"seed={seed}"] if seed is not None else []
    overrides += [f"output_dir={yaml_scalar(output_dir)}"] if output_dir else []
    overrides += [f"name={yaml_scalar(name)}"] if name else []
    overrides += set_ or []
    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise UserError(f"--resume {resume}: not a run folder (no config.yaml).")
        experiment = build_config(read_yaml(resume / "config.yaml"), overrides)
    else:
        experiment = load_config(config, overrides)
    setup_logging(quiet)
    result = run_experiment(experiment, resume_dir=resume, show_progress=not quiet, command=" ".join(sys.argv))
    print_metrics(result.metrics, f"{experiment.run_name} on {result.metrics['examples']:,} test reviews")
    console.print(f"Run folder: [bold]{result.run_dir}[/bold]")


@app.command()
def benchmark(
    models_: Annotated[
        str, typer.Option("--models", help="Comma-separated models or configs.")
    ] = "tfidf-lr,nbsvm",
    data: DataOption = None,
    limit: LimitOption = None,
    test_limit: TestLimitOption = None,
    output_dir: Annotated[str, typer.Option(help="Where run folders and the leaderboard go.")] = "runs/benchmark",
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Train several models on the same data and write a leaderboard (Markdown + CSV)."""
    from imdb_sentiment.pipelines.benchmark import run_benchmark

    names = [item.strip() for item in models_.split(",") if item.strip()]
    if not names:
        raise UserError("--models is empty; pass e.g. --models tfidf-lr,nbsvm.")
    setup_logging(quiet)
    overrides = data_overrides(data, limit=limit, test_limit=test_limit) + (set_ or [])
    board, paths = run_benchmark(names, overrides, Path(output_dir), show_progress=not quiet)
    console.print(board.to_markdown_table(), soft_wrap=True, markup=False, highlight=False)
    console.print("Leaderboard: " + ", ".join(f"[bold]{p}[/bold]" for p in paths))


@app.command()
def models() -> None:
    """List the registered models."""
    from imdb_sentiment.models.registry import available_models, get_model_class

    table = Table("model", "kind", "description")
    for model_name in available_models():
        try:
            cls = get_model_class(model_name)
        except ImportError as exc:  # an optional dependency is missing: shown, not hidden
            table.add_row(model_name, "unavailable", str(exc))
            continue
        kind = "pytorch (shared loop)" if cls.uses_training_loop else "scikit-learn"
        table.add_row(model_name, kind, cls.description or (cls.__doc__ or "").strip().splitlines()[0])
    console.print(table)


@app.command("show-config")
def show_config(
    config: Annotated[str, typer.Argument(help="A YAML config, a name under configs/, or a model name.")],
    set_: SetOption = None,
) -> None:
    """Print the fully resolved and validated config (every default filled in)."""
    from imdb_sentiment.config import dump_config, load_config

    console.print(dump_config(load_config(config, set_ or [])), markup=False, highlight=False)
