"""imdb-sentiment: train, evaluate, compare and serve sentiment classifiers on IMDB."""

__version__ = "0.1.0"
