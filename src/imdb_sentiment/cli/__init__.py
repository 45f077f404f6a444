"""Command-line interface: ``imdb-sentiment --help``.

:mod:`.app` holds the Typer application, shared options and error handling; each sibling module adds
one group of commands to it. They are imported here explicitly: a command group that cannot be
imported is a broken install, and that must fail loudly rather than vanish from ``--help``.
"""

from imdb_sentiment.cli import data, embeddings, experiments, export, inference, llm, mlm, serve, tune  # noqa: F401  (registers commands)
from imdb_sentiment.cli.app import app, main

__all__ = ["app", "main"]
