"""Prefix Tuning for encoders (Li & Liang 2021), in the shape of a peft tuner: the settings are
:class:`~imdb_sentiment.models.hf.adapters.config.PrefixAdapter`, :mod:`.layer` holds the trainable
prefixes and the attention function that uses them, :mod:`.model` attaches them to a transformers model.

Why not peft's ``PrefixTuningConfig``: under transformers 5, peft 0.21 refuses BERT-family classifiers
("does not support past key values"): encoders no longer take a key/value cache. Here the prefixes go
in through transformers' own attention interface instead: a registered attention function prepends
each layer's learned keys and values, then runs the stock SDPA kernel.
"""

from imdb_sentiment.models.hf.adapters.prefix.model import (
    SUPPORTED_MODEL_TYPES,
    add_prefix_tuning,
    check_prefix_support,
)

__all__ = ["SUPPORTED_MODEL_TYPES", "add_prefix_tuning", "check_prefix_support"]
