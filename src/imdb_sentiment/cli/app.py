"""The Typer application, the options several commands share, and error handling.

Every user-caused error (bad file, bad config, bad label...) ends in one line on stderr and exit
code 2; nothing half-written is left behind. Commands live in the sibling modules, one per group.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from imdb_sentiment.errors import JobStopped, RunInterrupted, UserError

app = typer.Typer(
    help="Train, evaluate, compare and serve sentiment classifiers on IMDB (or any labelled text set).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
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
# Numeric options carry the bounds of the config fields they set, so typer rejects a bad value as a
# usage error (exit code 2) before anything is loaded.
SEED_MAX = 2**32 - 1  # scikit-learn (the split seed) and numpy legacy seeding take 32 bits
LimitOption = Annotated[
    int | None, typer.Option(min=4, help="Train on a stratified subsample of this size (data.limit, >= 4).")
]
TestLimitOption = Annotated[
    int | None, typer.Option(min=2, help="Evaluate on a stratified test subsample (data.test_limit, >= 2).")
]
SeedOption = Annotated[int | None, typer.Option(min=0, max=SEED_MAX, help="Shortcut for seed.")]
BatchSizeOption = Annotated[int, typer.Option(min=1, max=65536, help="Prediction batch size.")]
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
    return [f"data.{key}={yaml_scalar(value)}" for key, value in values.items() if value is not None]


def yaml_scalar(value: Any) -> str:
    """Quote strings as YAML so paths like "1e3" or "null" stay strings in ``--set`` overrides."""
    return json.dumps(value) if isinstance(value, str) else str(value)


def setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("imdb_sentiment")
    logger.setLevel(logging.INFO)
    ours = [handler for handler in logger.handlers if isinstance(handler, RichHandler)]
    if quiet:  # as in a fresh process, whatever ran before in this one (tests, notebooks): warnings only
        for handler in ours:
            logger.removeHandler(handler)
    elif not ours:
        logger.addHandler(RichHandler(console=err_console, show_path=False, markup=False))


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title, show_header=False)
    # LLM rows add coverage (llm-prompt) and the accuracy under each calibration (llm-score).
    for key in ("accuracy", "accuracy_valid_only", "coverage", "accuracy_none", "accuracy_content_free",
                "accuracy_train", "f1", "precision", "recall", "roc_auc"):  # fmt: skip
        if metrics.get(key) is not None:
            table.add_row(key, f"{metrics[key]:.4f}")
    if "per_class" in metrics:  # three or more classes: macro-F1, and for ordered ones MAE and within-one
        for key in ("macro_f1", "mae", "within_one"):
            if metrics.get(key) is not None:
                name = f"mae ({metrics.get('mae_units')})" if key == "mae" else key  # stars for ratings
                table.add_row(name, f"{metrics[key]:.4f}")
    for key, unit in (("train_seconds", "s"), ("inference_seconds", "s"), ("parameters", ""),
                      ("peak_memory_mb", "MB")):  # fmt: skip
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:,.1f} {unit}" if isinstance(value, float) else f"{value:,} {unit}")
    console.print(table)


def main() -> None:
    try:
        app()
    except UserError as exc:
        # escape: a message's own brackets (pip install "imdb-sentiment[ray]") are text, not Rich markup
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except JobStopped as exc:  # a run pre-empted (RunPreempted), or another command stopped by SIGTERM
        err_console.print(exc.message, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except SystemExit as exc:
        # Typer turns Ctrl-C into exit code 130 silently; the KeyboardInterrupt is the cause of the
        # Exit that became this SystemExit. A run's RunInterrupted says how to resume it.
        if exc.code == 130:
            cause = exc.__context__.__cause__ if exc.__context__ is not None else None
            message = cause.message if isinstance(cause, RunInterrupted) else "interrupted"
            err_console.print(message, highlight=False, soft_wrap=True)
        raise
    except KeyboardInterrupt:  # outside Typer's own handling (e.g. while importing)
        err_console.print("interrupted")
        sys.exit(130)
