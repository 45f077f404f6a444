"""``imdb-sentiment tune``: hyper-parameter search on the validation split (Optuna), here or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imdb_sentiment.cli.app import DataOption, LimitOption, SetOption, app, console, data_overrides, setup_logging

ExecutorOption = Annotated[
    str, typer.Option("--executor", help="local (runs in turn, here) or ray (each run a Ray task).")
]
AddressOption = Annotated[
    str | None,
    typer.Option("--address", help="An existing Ray cluster (e.g. ray://head:10001, auto); default: a local one."),
]


@app.command()
def tune(
    config: Annotated[
        str,
        typer.Argument(help="A tune YAML (a config with a search: section) or a name under configs/search/."),
    ],
    trials: Annotated[
        int,
        typer.Option(min=1, max=100_000, help="Finished trials the study should hold (a re-run adds the rest)."),
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Stop asking for trials after this many seconds.")
    ] = None,
    output_dir: Annotated[
        str, typer.Option(help="Trials, study.db, best.yaml, trials.csv and tune-report.html.")
    ] = "runs/tune",
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL shared by machines (e.g. postgresql://...); default SQLite in --output-dir."
        ),
    ] = None,
    study_name: Annotated[str, typer.Option(help="The study's name inside the storage.")] = "tune",
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    data: DataOption = None,
    limit: LimitOption = None,
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option(help="No log lines.")] = False,
) -> None:
    """Search a config's space on validation; write best.yaml (``train`` runs it) and score the best trial,
    only it, on the test split. Re-running the same command continues the study."""
    from imdb_sentiment.pipelines.executors import make_executor
    from imdb_sentiment.pipelines.search_space import load_tune_file
    from imdb_sentiment.pipelines.tune import import_optuna, run_tune
    from imdb_sentiment.pipelines.tune_report import hand_set_label

    tune_file = load_tune_file(config)
    import_optuna()  # missing: one line saying how to install it, before anything else
    setup_logging(quiet)
    chosen = make_executor(executor, address)
    try:
        result = run_tune(tune_file, Path(output_dir), data_overrides(data, limit=limit) + (set_ or []), trials=trials,
                          timeout=timeout, storage=storage, study_name=study_name, executor=chosen)  # fmt: skip
    finally:
        chosen.shutdown()
    table = Table(title=f"{result.study.study_name}: {len(result.study.trials)} trials", show_header=False)
    if result.best is not None:
        best = result.best
        table.add_row("best trial", str(best["number"]))
        table.add_row(f"validation {result.study.user_attrs['metric']}", f"{best['value']:.4f}")
        table.add_row("test accuracy (best trial only)", f"{best['test']['accuracy']:.4f}")
        if result.hand_set is not None:
            hand_set = result.hand_set
            table.add_row(f"{hand_set_label(hand_set)}: validation", f"{hand_set['value']:.4f}")
        for name, value in best["params"].items():
            table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print("Best config, trials and report: " + ", ".join(f"[bold]{p}[/bold]" for p in result.files))
