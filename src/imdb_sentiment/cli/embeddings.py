"""``imdb-sentiment embeddings ...``: train in-domain word2vec once, and check vector coverage."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from imdb_sentiment.cli.app import SEED_MAX, DataOption, app, console

embeddings_app = typer.Typer(help="Word vectors for the word models (word2vec on train + unlabeled reviews).",
                             no_args_is_help=True)  # fmt: skip
app.add_typer(embeddings_app, name="embeddings")


def _print(rows: dict[str, object], title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")  # paths stay whole (wrapped), never cut with an ellipsis
    for key, value in rows.items():
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                table.add_row(f"{key}.{inner_key}", f"{inner_value}")
        else:
            table.add_row(key, f"{value}")
    console.print(table)


@embeddings_app.command("train")
def train(
    data: DataOption = None,
    dim: Annotated[int, typer.Option(min=2, max=2048, help="Vector size (the models' embedding_dim).")] = 200,
    window: Annotated[int, typer.Option(min=1, max=50, help="Context words on each side.")] = 5,
    min_count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Ignore words rarer than this.")] = 3,
    epochs: Annotated[int, typer.Option(min=1, max=100, help="Passes over the corpus.")] = 5,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Training threads.")] = 2,
    seed: Annotated[
        int,
        typer.Option(
            min=0,
            max=SEED_MAX,
            help="data.seed of the runs to match: it carves the validation split, whose reviews stay out of the corpus (word2vec's own initialisation is fixed by its settings, not by this).",
        ),
    ] = 42,
) -> None:
    """Train word2vec on the training split + unlabeled reviews (never test) and cache it.

    Word models with ``embeddings: word2vec`` and the same settings then load it instead of training.
    """
    from imdb_sentiment.text.embeddings import train_embeddings_command

    result = train_embeddings_command(data, dim, window, min_count, epochs, workers, seed)
    _print(result, "word2vec (cached)" if result["from_cache"] else "word2vec (trained)")


@embeddings_app.command("coverage")
def coverage(
    vectors: Annotated[str, typer.Argument(help="A word2vec binary / word2vec text / GloVe text file.")],
    data: DataOption = None,
    format: Annotated[
        str, typer.Option("--format", help="auto, word2vec-binary, word2vec-text or glove.")
    ] = "auto",
    min_freq: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Vocabulary: words seen at least this often.")
    ] = 2,
    seed: Annotated[
        int,
        typer.Option(
            min=0,
            max=SEED_MAX,
            help="data.seed of the runs to match: it carves the validation split, whose reviews stay out of the corpus (word2vec's own initialisation is fixed by its settings, not by this).",
        ),
    ] = 42,
) -> None:
    """Share of the training vocabulary (and of its tokens) that a vectors file covers."""
    from imdb_sentiment.errors import UserError
    from imdb_sentiment.text.embeddings import VECTOR_FORMATS, coverage_command

    if format not in VECTOR_FORMATS:
        raise UserError(f"--format {format!r} is not one of {', '.join(VECTOR_FORMATS)}.")
    _print(coverage_command(vectors, data, format, min_freq, seed), f"coverage of {vectors}")  # type: ignore[arg-type]
