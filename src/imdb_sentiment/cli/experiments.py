"""Commands that define and run experiments: train, benchmark, analyze, models, show-config."""

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
from imdb_sentiment.cli.tune import AddressOption, ExecutorOption
from imdb_sentiment.errors import RunPreempted, UserError


@app.command()
def train(
    config: Annotated[
        str | None,
        typer.Argument(
            help="A YAML config, a name under configs/, or a model name (default nbsvm; with --resume: the run's)."
        ),
    ] = None,
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
    overwrite: Annotated[
        bool, typer.Option(help="Let --resume continue a run that already completed, replacing its results.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
) -> None:
    """Train a model, evaluate it on the full test set and write a run folder.

    Several processes or machines: launch it with torchrun (e.g. ``torchrun --nproc-per-node 4 -m
    imdb_sentiment.cli train CONFIG``); rank 0 writes the run folder."""
    from imdb_sentiment.models.configure import load_config, resume_config
    from imdb_sentiment.pipelines.experiment import run_experiment
    from imdb_sentiment.runs import check_resumable

    overrides = data_overrides(data, format, text_column, label_column, encoding, limit, test_limit)
    overrides += [f"training.epochs={epochs}"] if epochs is not None else []
    overrides += [f"seed={seed}"] if seed is not None else []
    overrides += [f"output_dir={yaml_scalar(output_dir)}"] if output_dir else []
    overrides += [f"name={yaml_scalar(name)}"] if name else []
    overrides += set_ or []
    if resume is not None:
        check_resumable(resume, overwrite)
        experiment = resume_config(resume, overrides, config)  # refuses what the checkpoint cannot take
    else:
        experiment = load_config(config or "nbsvm", overrides)
    from imdb_sentiment.training.distributed import launcher_ranks, leave_process_group

    quiet = quiet or launcher_ranks()[0] != 0  # under a launcher, rank 0 speaks for all
    setup_logging(quiet)
    finished = False  # every rank got here together: they may meet at a barrier before leaving
    try:
        result = run_experiment(experiment, resume_dir=resume, show_progress=not quiet, command=" ".join(sys.argv))
        finished = True
    except RunPreempted as stopped:
        # Stopped after a step or at the end of training: every rank agreed on it (a collective) and
        # raised, and rank 0 may still be writing run.json; the others tearing gloo down meanwhile is the
        # abort the barrier prevents. A stop during another stage is one rank's: no barrier.
        finished = stopped.agreed
        raise
    finally:
        leave_process_group(finished)
    if not result.main_process:
        return
    print_metrics(result.metrics, f"{experiment.run_name} on {result.metrics['examples']:,} test reviews")
    console.print(f"Run folder: [bold]{result.run_dir}[/bold]")


@app.command()
def benchmark(
    suite: Annotated[
        str | None,
        typer.Argument(
            help="A suite: seed, quick, full (configs/suites/) or a suite YAML file. Default: --models."
        ),
    ] = None,
    models_: Annotated[
        str | None, typer.Option("--models", help="Comma-separated models or configs (default tfidf-lr,nbsvm).")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(min=1, max=50, help="Repeat every row with this many seeds; mean ± std.")
    ] = None,
    vary: Annotated[
        str | None,
        typer.Option(help="What the seeds vary: both (initialisation and data sample), init, or data."),
    ] = None,
    train_sizes: Annotated[
        str | None,
        typer.Option(
            help="Nested stratified training subsets for learning curves, e.g. 16,64,256,1024,4096,full "
            "(for every row, also those with train_sizes of their own)."
        ),
    ] = None,
    include_gpu_rows: Annotated[bool, typer.Option(help="Run rows marked GPU-only even without a GPU.")] = False,
    ood_data: Annotated[
        Path | None,
        typer.Option(
            help="Where the suite's out-of-domain set is (its out_of_domain: MR sentences, rt-polarity.pos/.neg, "
            "by default); default: its own path, else the mr folder beside the data, if there."
        ),
    ] = None,
    data: DataOption = None,
    limit: LimitOption = None,
    test_limit: TestLimitOption = None,
    output_dir: Annotated[
        str, typer.Option(help="Where run folders, leaderboard and report go.")
    ] = "runs/benchmark",
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars or log lines.")] = False,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
) -> None:
    """Run a suite (rows x seeds x train sizes); write leaderboard.md/.csv, runs.csv and report.html.

    Re-running the same command skips the runs that completed and resumes interrupted ones.
    """
    from imdb_sentiment.pipelines.benchmark import run_benchmark
    from imdb_sentiment.pipelines.suites import load_suite, parse_train_sizes, suite_from_models

    if suite is not None and models_ is not None:
        raise UserError("Give a suite or --models, not both.")
    if suite is not None:
        chosen = load_suite(suite)
    else:
        names = [item.strip() for item in (models_ or "tfidf-lr,nbsvm").split(",") if item.strip()]
        if not names:
            raise UserError("--models is empty; pass e.g. --models tfidf-lr,nbsvm.")
        chosen = suite_from_models(names)
    if vary is not None and vary not in ("both", "init", "data"):
        raise UserError(f"--vary {vary!r}: use both, init or data.")
    updates: dict[str, object] = {}
    if seeds is not None:
        updates["seeds"] = seeds
    if vary is not None:
        updates["vary"] = vary
    if train_sizes is not None:  # every row's, also where a row gives its own
        updates["train_sizes"] = parse_train_sizes(train_sizes)
        updates["rows"] = [row.model_copy(update={"train_sizes": None}) for row in chosen.rows]
    chosen = chosen.model_copy(update=updates)
    setup_logging(quiet)
    overrides = data_overrides(data, limit=limit, test_limit=test_limit) + (set_ or [])
    from imdb_sentiment.pipelines.executors import make_executor

    runner = make_executor(executor, address)  # --executor ray without Ray: one line, exit 2
    try:
        result, paths = run_benchmark(
            chosen, overrides, Path(output_dir), include_gpu_rows=include_gpu_rows, ood_path=ood_data,
            show_progress=not quiet, command=" ".join(["imdb-sentiment", *sys.argv[1:]]), executor=runner,
        )  # fmt: skip
    finally:
        runner.shutdown()
    from imdb_sentiment.pipelines.leaderboard import grouped_tables, main_rows

    if not result.main_process:  # under a launcher rank 0 prints and writes
        return
    board = result.leaderboard_frame()
    if not board.empty:
        console.print(
            "\n".join(grouped_tables(main_rows(board), "##")), soft_wrap=True, markup=False, highlight=False
        )
    failed = sum(record.status == "failed" for record in result.records)
    if failed:
        console.print(f"[bold red]{failed} run(s) failed[/bold red]: see {paths[0]}")
    console.print("Leaderboard and report: " + ", ".join(f"[bold]{p}[/bold]" for p in paths))


@app.command()
def analyze(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    data: DataOption = None,
    ood_data: Annotated[
        Path | None,
        typer.Option(help="MR sentences for out-of-domain accuracy; default: the mr folder beside the data."),
    ] = None,
) -> None:
    """Error analysis of a run: confident mistakes, accuracy by length and on negation / contrast,
    calibration, out-of-domain accuracy; written into RUN/analysis/."""
    from imdb_sentiment.errors import JobStopped
    from imdb_sentiment.pipelines.analyze import analyze_run
    from imdb_sentiment.training.preemption import TrainingStopped, stop_on_sigterm

    # --data: the run's data section with another location (same layout, same seed), MR looked for beside it.
    # SIGTERM: exit 143 in one line; each analysis file is written atomically, so none is left half-written.
    try:
        with stop_on_sigterm():
            analysis = analyze_run(run, ood_data, data_path=Path(data) if data is not None else None)
    except TrainingStopped:
        raise JobStopped(
            f"stopped by SIGTERM; {run / 'analysis'} holds no half-written file: run analyze again."
        ) from None
    cues = analysis["accuracy_by_cues"]
    table = Table(title=f"{run.name}: {analysis['examples']:,} test reviews", show_header=False)
    table.add_row("accuracy", f"{100 * analysis['accuracy']:.2f}%")
    table.add_row("calibration error (ECE)", f"{analysis['calibration']['ece']:.4f}")
    if ordinal := analysis.get("ordinal"):
        table.add_row("mean absolute error", f"{ordinal['mae']:.3f}")
        table.add_row("within one step", f"{100 * ordinal['within_one']:.2f}%")
    for name, row in (analysis.get("per_class") or {}).items():  # any task but sentiment
        if row["recall"] is not None:
            table.add_row(f"recall of {name}", f"{100 * row['recall']:.2f}% ({row['count']:,})")
    for name, row in cues.items():
        if row["with"]["accuracy"] is not None and row["without"]["accuracy"] is not None:
            table.add_row(f"with {name} words", f"{100 * row['with']['accuracy']:.2f}% ({row['with']['count']:,})")
            table.add_row(
                f"without {name} words", f"{100 * row['without']['accuracy']:.2f}% ({row['without']['count']:,})"
            )
    if analysis.get("out_of_domain"):
        ood = analysis["out_of_domain"]
        table.add_row(
            f"{ood['name']} (out of domain)", f"{100 * ood['accuracy']:.2f}% ({ood['examples']:,} examples)"
        )
    console.print(table)
    if skipped := analysis.get("out_of_domain_skipped"):
        console.print(f"Out of domain: not scored, {skipped}.", markup=False, highlight=False)
    console.print(f"Analysis: [bold]{run / 'analysis' / 'analysis.md'}[/bold]")


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
        table.add_row(
            model_name, cls.capabilities.kind, cls.description or (cls.__doc__ or "").strip().splitlines()[0]
        )
    console.print(table)


@app.command("show-config")
def show_config(
    config: Annotated[str, typer.Argument(help="A YAML config, a name under configs/, or a model name.")],
    set_: SetOption = None,
) -> None:
    """Print the fully resolved and validated config (every default filled in)."""
    from imdb_sentiment.config import dump_config
    from imdb_sentiment.models.configure import load_config

    console.print(dump_config(load_config(config, set_ or [])), markup=False, highlight=False)
