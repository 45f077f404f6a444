"""Text side of the pipeline: truncation, tokenizers/encoders, vocabularies, embeddings."""
