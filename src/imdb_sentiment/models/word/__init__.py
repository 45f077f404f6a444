"""Word-level neural models: fastText, CNN, LSTM/GRU, CNN-LSTM, attention-LSTM, capsule-LSTM and a
Transformer encoder, all on a word vocabulary with word2vec (or pretrained / random) embeddings.

Each module registers its model(s) with ``@register_model``; the registry imports them lazily.
"""
