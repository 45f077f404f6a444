"""Pretrained (and from-scratch) Hugging Face encoders: ``hf``, ``minilm`` and ``bert-scratch``.

- :mod:`.encoder`: :class:`HFTokenizerEncoder`, the fast-tokenizer side (head/tail truncation in token
  space, dynamic padding, a tokenisation cache, chunk-and-pool batches);
- :mod:`.model`: the registered models and the network adapter the shared loop trains.

Nothing here is imported by ``imdb_sentiment`` itself: the registry loads :mod:`.model` by name.
"""

from imdb_sentiment.models.hf.encoder import HFTokenizerEncoder, minilm_path, train_wordpiece_tokenizer

__all__ = ["HFTokenizerEncoder", "minilm_path", "train_wordpiece_tokenizer"]
