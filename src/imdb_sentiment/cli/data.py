"""``imdb-sentiment data ...``: get and inspect datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli.app import (
    DataOption,
    EncodingOption,
    FormatOption,
    LabelColumnOption,
    SetOption,
    TextColumnOption,
    app,
    console,
)
from imdb_sentiment.errors import UserError

data_app = typer.Typer(help="Get and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


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
    set_: SetOption = None,
) -> None:
    """Counts, each class's count and share, words per review and vocabulary size of each split.

    Any data field with --set, e.g. --set data.target=rating (IMDB's 8 star classes) or
    --set 'data.labels=[neg,neutral,pos]'."""
    from imdb_sentiment.config import apply_overrides, build_data_config
    from imdb_sentiment.data.loaders import read_dataset
    from imdb_sentiment.data.splits import resolve_data_path
    from imdb_sentiment.data.stats import render_stats, stats_by_split

    values = {"path": data, "format": format, "text_column": text_column, "label_column": label_column,
              "encoding": encoding}  # fmt: skip
    if other := [item for item in set_ or [] if not item.strip().startswith("data.")]:
        raise UserError(f"--set {other[0]!r}: data stats reads the data section only; give data.<field>=value.")
    raw = apply_overrides({"data": {k: v for k, v in values.items() if v is not None}}, set_ or [])
    spec = build_data_config(raw["data"])
    splits = read_dataset(resolve_data_path(spec.path), spec)
    console.print(render_stats(stats_by_split(splits.parts())))
