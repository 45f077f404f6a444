"""Commands that use a finished run: evaluate, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imdb_sentiment.cli.app import (
    BatchSizeOption,
    DataOption,
    EncodingOption,
    FormatOption,
    LabelColumnOption,
    TextColumnOption,
    app,
    console,
    err_console,
    print_metrics,
)

OnnxOption = Annotated[
    bool,
    typer.Option("--onnx", help="Run the run's ONNX export with onnxruntime (imdb-sentiment export RUN --onnx)."),
]


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    data: DataOption = None,
    format: FormatOption = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    encoding: EncodingOption = None,
    limit: Annotated[
        int | None, typer.Option(min=2, help="Evaluate on a stratified subsample (>= 2, one per label).")
    ] = None,
    batch_size: BatchSizeOption = 128,
    onnx: OnnxOption = False,
) -> None:
    """Evaluate a saved run on its test set or on any labelled dataset (e.g. MR, a CSV)."""
    from imdb_sentiment.serving.predictor import evaluate_run

    metrics, output = evaluate_run(
        run, data=data, format=format, text_column=text_column, label_column=label_column,
        encoding=encoding, limit=limit, batch_size=batch_size, onnx=onnx,
    )  # fmt: skip
    if metrics.get("note"):  # e.g. --data without a test split: which reviews were scored instead
        err_console.print(f"[bold yellow]note:[/bold yellow] {metrics['note']}", highlight=False, soft_wrap=True)
    print_metrics(metrics, f"{run.name} on {metrics['examples']:,} reviews of {metrics['dataset']}")
    console.print(f"Saved: [bold]{output}[/bold]")


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
        Path | None,
        typer.Option(help="Write a Kaggle submission (id,sentiment) for testData.tsv (sentiment runs only)."),
    ] = None,
    batch_size: BatchSizeOption = 128,
    onnx: OnnxOption = False,
) -> None:
    """Classify texts given as arguments, from a file or from stdin (--output: one probability column per class).

    "known" is the share of a text's tokens the model knows; a text at 0% gets the model's prior.
    """
    from imdb_sentiment.serving.predictor import (
        Predictor,
        check_kaggle_submission,
        read_prediction_inputs,
        unknown_texts_warning,
        write_prediction_outputs,
    )

    check_outputs(file, output, kaggle_submission)
    ids, inputs = read_prediction_inputs(texts, file, text_column, id_column, encoding)
    predictor = Predictor.from_run(run, onnx=onnx)
    classes = predictor.classes
    check_kaggle_submission(classes, kaggle_submission)  # before the work: a rating run has no 0/1 sentiment
    probabilities, known = predictor.classify(inputs, batch_size=batch_size)
    warning = unknown_texts_warning(known)
    if warning:
        err_console.print(f"[bold yellow]warning:[/bold yellow] {warning}", highlight=False, soft_wrap=True)
    if output or kaggle_submission:
        write_prediction_outputs(ids, probabilities, output, kaggle_submission, known, classes)
        for path in (output, kaggle_submission):
            if path:
                console.print(f"Wrote {len(ids):,} predictions to [bold]{path}[/bold]")
        return
    binary = classes.is_sentiment
    # Sentiment: the verdict and P(positive), as ever; other classes: the predicted one and its probability.
    table = Table(
        "id", "sentiment" if binary else "label", "P(positive)" if binary else "P(label)", "known", "text"
    )
    for row, (item_id, text, probability) in enumerate(zip(ids, inputs, probabilities, strict=True)):
        if binary:
            label, shown = ("positive" if probability[1] >= 0.5 else "negative"), probability[1]
        else:
            label, shown = classes.name_of(int(probability.argmax())), probability.max()
        share = "n/a" if known is None else f"{100 * known[row]:.0f}%"
        table.add_row(item_id, label, f"{shown:.4f}", share, text[:80] + ("…" if len(text) > 80 else ""))
    console.print(table)


def check_outputs(file: Path | None, output: Path | None, kaggle_submission: Path | None) -> None:
    """Refuse, before any work, an output that is the input file (or the other output): writing it
    would replace the texts with predictions. Links count: a symlink or hard link to the input is it."""
    from imdb_sentiment.errors import UserError
    from imdb_sentiment.io_utils import same_file

    named = [("--file", file), ("--output", output), ("--kaggle-submission", kaggle_submission)]
    for index, (option, path) in enumerate(named[1:], start=1):
        for earlier, other in named[:index]:
            if path is not None and other is not None and same_file(path, other):
                raise UserError(
                    f"{option} {path} is the same file as {earlier} {other}: writing it would overwrite "
                    f"{'the input texts' if earlier == '--file' else 'the other output'}. Choose another {option} file."
                )
