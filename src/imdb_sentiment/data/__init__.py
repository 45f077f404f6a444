"""Data layer: loading every supported layout, cleaning, splits, download and statistics."""

from imdb_sentiment.data.dataset import UNLABELED, DatasetSplits, TextDataset
from imdb_sentiment.data.loaders import read_dataset
from imdb_sentiment.data.splits import PreparedData, load_data, prepare_splits, resolve_data_path

__all__ = [
    "UNLABELED",
    "DatasetSplits",
    "PreparedData",
    "TextDataset",
    "load_data",
    "prepare_splits",
    "read_dataset",
    "resolve_data_path",
]
