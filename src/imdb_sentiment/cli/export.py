"""``imdb-sentiment export``: turn a finished run into what serving needs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli.app import app, console
from imdb_sentiment.errors import UserError


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    merge: Annotated[
        bool, typer.Option("--merge", help="Fold a LoRA adapter into the base weights (same predictions).")
    ] = False,
    output: Annotated[Path | None, typer.Option(help="New run folder (default: RUN-merged).")] = None,
) -> None:
    """Export a run for serving (``--merge``: a LoRA run becomes a plain model with no adapter latency)."""
    from imdb_sentiment.pipelines.export import export_merged

    if not merge:
        raise UserError("Nothing to export: pass --merge (fold a LoRA adapter into the base weights).")
    target = export_merged(run, output)
    console.print(f"Merged model: [bold]{target}[/bold] (predict / evaluate it like any run)")
