"""Command-line interface: ``imdb-sentiment --help``.

Every user-caused error (bad file, bad config, bad label...) ends in one line on stderr and exit
code 2; nothing half-written is left behind.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from imdb_sentiment.errors import UserError

app = typer.Typer(
    help="Train, evaluate, compare and serve sentiment classifiers on IMDB (or any labelled text set).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Get and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

DataOption = Annotated[
    str | None,
    typer.Option("--data", help="Dataset: aclImdb folder, .tar.gz, Parquet folder, Kaggle TSVs or a table."),
]
FormatOption = Annotated[str | None, typer.Option("--format", help="Force the layout (default: auto).")]
TextColumnOption = Annotated[str | None, typer.Option("--text-column", help="Text column of a table.")]
LabelColumnOption = Annotated[str | None, typer.Option("--label-column", help="Label column of a table.")]
EncodingOption = Annotated[str | None, typer.Option("--encoding", help="File encoding, e.g. latin-1.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override any config field: section.field=value (repeatable)."),
]


def data_overrides(
    data: str | None = None,
    format: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
) -> list[str]:
    values = {"path": data, "format": format, "text_column": text_column, "label_column": label_column,
              "encoding": encoding, "limit": limit, "test_limit": test_limit}  # fmt: skip
    # Quote strings as YAML so paths like "1e3" or "null" stay strings.
    return [f"data.{key}={_yaml_scalar(value)}" for key, value in values.items() if value is not None]


def _yaml_scalar(value: Any) -> str:
    import json

    return json.dumps(value) if isinstance(value, str) else str(value)


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("imdb_sentiment")
    logger.setLevel(logging.INFO)
    if not quiet and not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=err_console, show_path=False, markup=False))


# ------------------------------------------------------------------------------------------ train
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
    limit: Annotated[int | None, typer.Option(help="Train on a stratified subsample of this size.")] = None,
    test_limit: Annotated[int | None, typer.Option(help="Evaluate on a stratified test subsample.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for training.epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Shortcut for seed.")] = None,
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
    from imdb_sentiment.training.experiment import run_experiment

    overrides = data_overrides(data, format, text_column, label_column, encoding, limit, test_limit)
    overrides += [f"training.epochs={epochs}"] if epochs is not None else []
    overrides += [f"seed={seed}"] if seed is not None else []
    overrides += [f"output_dir={_yaml_scalar(output_dir)}"] if output_dir else []
    overrides += [f"name={_yaml_scalar(name)}"] if name else []
    overrides += set_ or []
    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise UserError(f"--resume {resume}: not a run folder (no config.yaml).")
        experiment = build_config(read_yaml(resume / "config.yaml"), overrides)
    else:
        experiment = load_config(config, overrides)
    _setup_logging(quiet)
    result = run_experiment(experiment, resume_dir=resume, show_progress=not quiet, command=" ".join(sys.argv))
    _print_metrics(result.metrics, f"{experiment.run_name} on {result.metrics['examples']:,} test reviews")
    console.print(f"Run folder: [bold]{result.run_dir}[/bold]")


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title, show_header=False)
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc"):
        if metrics.get(key) is not None:
            table.add_row(key, f"{metrics[key]:.4f}")
    for key, unit in (("train_seconds", "s"), ("inference_seconds", "s"), ("parameters", ""),
                      ("peak_memory_mb", "MB")):  # fmt: skip
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:,.1f} {unit}" if isinstance(value, float) else f"{value:,} {unit}")
    console.print(table)


# --------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    data: DataOption = None,
    format: FormatOption = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    encoding: EncodingOption = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate on a stratified subsample.")] = None,
    batch_size: Annotated[int, typer.Option(help="Prediction batch size.")] = 128,
) -> None:
    """Evaluate a saved run on its test set or on any labelled dataset (e.g. MR, a CSV)."""
    from imdb_sentiment.serving.predictor import evaluate_run

    metrics, output = evaluate_run(
        run, data=data, format=format, text_column=text_column, label_column=label_column,
        encoding=encoding, limit=limit, batch_size=batch_size,
    )  # fmt: skip
    _print_metrics(metrics, f"{run.name} on {metrics['examples']:,} reviews of {metrics['dataset']}")
    console.print(f"Saved: [bold]{output}[/bold]")


# ---------------------------------------------------------------------------------------- predict
@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify (else --file or stdin).")] = None,
    file: Annotated[
        Path | None, typer.Option(help="Texts file: .txt (one per line), CSV, TSV, JSONL, Parquet.")
    ] = None,
    text_column: TextColumnOption = None,
    id_column: Annotated[str | None, typer.Option(help="Id column (default: 'id' if present).")] = None,
    encoding: Annotated[str, typer.Option(help="Encoding of --file / stdin.")] = "utf-8",
    output: Annotated[Path | None, typer.Option(help="Write predictions as CSV here.")] = None,
    kaggle_submission: Annotated[
        Path | None, typer.Option(help="Write a Kaggle submission (id,sentiment) for testData.tsv.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Prediction batch size.")] = 128,
) -> None:
    """Classify texts given as arguments, from a file or from stdin."""
    from imdb_sentiment.serving.predictor import Predictor, read_prediction_inputs, write_prediction_outputs

    ids, inputs = read_prediction_inputs(texts, file, text_column, id_column, encoding)
    predictor = Predictor.from_run(run)
    probabilities = predictor.predict_proba(inputs, batch_size=batch_size)
    if output or kaggle_submission:
        write_prediction_outputs(ids, probabilities, output, kaggle_submission)
        for path in (output, kaggle_submission):
            if path:
                console.print(f"Wrote {len(ids):,} predictions to [bold]{path}[/bold]")
        return
    table = Table("id", "sentiment", "P(positive)", "text")
    for item_id, text, row in zip(ids, inputs, probabilities, strict=True):
        label = "positive" if row[1] >= 0.5 else "negative"
        table.add_row(item_id, label, f"{row[1]:.4f}", text[:80] + ("…" if len(text) > 80 else ""))
    console.print(table)


# ----------------------------------------------------------------------------------------- models
@app.command()
def models() -> None:
    """List the registered models."""
    from imdb_sentiment.models.registry import available_models, get_model_class

    table = Table("model", "kind", "description")
    for model_name in available_models():
        try:
            cls = get_model_class(model_name)
        except ImportError as exc:  # an optional dependency is missing
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


# -------------------------------------------------------------------------------------- benchmark
@app.command()
def benchmark(
    models_: Annotated[
        str, typer.Option("--models", help="Comma-separated models or configs.")
    ] = "tfidf-lr,nbsvm",
    data: DataOption = None,
    limit: Annotated[int | None, typer.Option(help="Train on a stratified subsample.")] = None,
    test_limit: Annotated[int | None, typer.Option(help="Evaluate on a stratified test subsample.")] = None,
    output_dir: Annotated[str, typer.Option(help="Where run folders and the leaderboard go.")] = "runs/benchmark",
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Train several models on the same data and write a leaderboard (Markdown + CSV)."""
    from imdb_sentiment.evaluation.benchmark import run_benchmark

    names = [item.strip() for item in models_.split(",") if item.strip()]
    if not names:
        raise UserError("--models is empty; pass e.g. --models tfidf-lr,nbsvm.")
    _setup_logging(quiet)
    overrides = data_overrides(data, limit=limit, test_limit=test_limit) + (set_ or [])
    board, paths = run_benchmark(names, overrides, Path(output_dir), show_progress=not quiet)
    console.print(board.to_markdown_table(), soft_wrap=True, markup=False, highlight=False)
    console.print("Leaderboard: " + ", ".join(f"[bold]{p}[/bold]" for p in paths))


# ------------------------------------------------------------------------------------------- data
@data_app.command("download")
def data_download(
    url: Annotated[str | None, typer.Option(help="Archive URL (default: the official Stanford one).")] = None,
    destination: Annotated[Path | None, typer.Option(help="Folder to save into (default: the cache).")] = None,
    if_missing: Annotated[
        bool, typer.Option(help="Do nothing when a dataset is already found (--data / env / cache).")
    ] = False,
) -> None:
    """Download aclImdb_v1.tar.gz with a progress bar, resume and checksum check."""
    from imdb_sentiment.data.download import IMDB_SHA256, IMDB_URL, download_imdb
    from imdb_sentiment.data.splits import resolve_data_path

    if if_missing:
        try:
            found = resolve_data_path(None)
            if found.exists():
                console.print(f"Dataset already available: {found}")
                return
        except UserError:
            pass
    path = download_imdb(destination, url=url or IMDB_URL, sha256=IMDB_SHA256 if url is None else None)
    console.print(f"Saved [bold]{path}[/bold]; train with --data {path} (or leave --data out: it is cached).")


@data_app.command("stats")
def data_stats(
    data: DataOption = None,
    format: FormatOption = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    encoding: EncodingOption = None,
) -> None:
    """Counts, label balance, words per review and vocabulary size of each split."""
    from imdb_sentiment.config import DataConfig
    from imdb_sentiment.data.loaders import read_dataset
    from imdb_sentiment.data.splits import resolve_data_path
    from imdb_sentiment.data.stats import render_stats, stats_by_split

    values = {"path": data, "format": format, "text_column": text_column, "label_column": label_column,
              "encoding": encoding}  # fmt: skip
    spec = DataConfig(**{k: v for k, v in values.items() if v is not None})
    splits = read_dataset(resolve_data_path(spec.path), spec)
    console.print(render_stats(stats_by_split(splits.parts())))


def _mount_optional(module: str, name: str | None = None) -> None:
    """Mount a sub-app contributed by another part of the package."""
    import importlib

    try:
        sub = importlib.import_module(module)
    except ImportError:  # pragma: no cover - part not installed
        return
    if name:
        app.add_typer(sub.app, name=name)
    else:
        for command in sub.app.registered_commands:
            app.registered_commands.append(command)


_mount_optional("imdb_sentiment.text.embeddings_cli", "embeddings")
_mount_optional("imdb_sentiment.training.mlm_cli")


def main() -> None:
    try:
        app()
    except UserError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
