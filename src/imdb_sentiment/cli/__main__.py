"""``python -m imdb_sentiment.cli``: what launchers run (``torchrun -m imdb_sentiment.cli train ...``)."""

from imdb_sentiment.cli import main

main()
