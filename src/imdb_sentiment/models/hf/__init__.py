"""Pretrained (and from-scratch) Hugging Face encoders: ``hf``, ``minilm`` and ``bert-scratch``.

- :mod:`.params`: their settings and the write-up presets;
- :mod:`.hub`: where weights come from (folder, hub, the bundled MiniLM) and the errors when they can't;
- :mod:`.encoder`: :class:`HFTokenizerEncoder`, the fast-tokenizer side (head/tail truncation in token
  space, dynamic padding, a tokenisation cache, chunk-and-pool batches);
- :mod:`.backbone`: building the transformers model (pretrained, reloaded, or a from-scratch BertConfig);
- :mod:`.network`: :class:`HFNetwork`, the adapter the shared loop trains;
- :mod:`.model`: the registered classifiers.

Nothing here is imported by ``imdb_sentiment`` itself: the registry loads :mod:`.model` by name.
"""
