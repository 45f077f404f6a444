"""Shared parts of the word-level models: parameters, vocabulary + embeddings, masked layers.

Every word model is a :class:`WordModel`: it tokenizes with :mod:`imdb_sentiment.text.vocabulary`,
initialises its embedding layer from in-domain word2vec (trained on train + unlabeled reviews and
cached), a user's vectors file, or randomly, and supplies only ``build_network``. Fitting, prediction
and saving are :class:`TorchTextClassifier`'s, training is the shared loop's.

Padding never leaks: every layer here is written so that the output for a review is the same whatever
padding its batch adds (the tests check this for every model).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext
from imdb_sentiment.models.pooling import masked_mean
from imdb_sentiment.models.torch_base import TorchParams, TorchTextClassifier
from imdb_sentiment.text.embeddings import (
    VectorFormat,
    Word2VecSettings,
    build_embedding_matrix,
    load_vectors,
    train_or_load_word2vec,
    vectors_dim,
)
from imdb_sentiment.text.token_cache import tokenized_corpus
from imdb_sentiment.text.vocabulary import PAD_ID, UNK_ID, Vocabulary, WordEncoder
from imdb_sentiment.training.batching import EncodedDataset

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

logger = logging.getLogger("imdb_sentiment.models.word")

EMBEDDING_SOURCES = ("word2vec", "random")


class WordParams(TorchParams):
    vocab_size: int = Field(50_000, ge=10, description="Largest vocabulary, including <pad> and <unk>.")
    min_freq: int = Field(2, ge=1, description="Words rarer than this in the training split become <unk>.")
    embedding_dim: int = Field(200, ge=2, le=2048)
    embeddings: str = Field(
        "word2vec",
        description="'word2vec' (trained on train + unlabeled texts, cached), 'random', "
        "or the path of a word2vec binary / word2vec text / GloVe text vectors file.",
    )
    embeddings_format: VectorFormat = Field("auto", description="Format of an embeddings file.")
    freeze_embeddings: bool = Field(False, description="Keep the pretrained vectors fixed.")
    embedding_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout on word vectors.")
    word2vec: Word2VecSettings = Field(default_factory=Word2VecSettings)

    @field_validator("embeddings")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give 'word2vec', 'random' or a vectors file path")
        return value.strip()

    @property
    def embeddings_file(self) -> Path | None:
        return None if self.embeddings in EMBEDDING_SOURCES else Path(self.embeddings).expanduser()


class WordModel(TorchTextClassifier):
    """Base of the word models; subclasses implement :meth:`build_network`."""

    Params = WordParams
    params: WordParams
    capabilities = replace(TorchTextClassifier.capabilities, explanation="integrated-gradients")

    def __init__(self, params: WordParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        # Pretrained rows in vocabulary order; set while fitting, None after loading (weights restore it).
        self.pretrained_matrix: np.ndarray | None = None

    # ------------------------------------------------------------------------------- config checks
    @classmethod
    def check_config(cls, config: ExperimentConfig, params: WordParams) -> None:  # type: ignore[override]
        super().check_config(config, params)
        if params.freeze_embeddings and params.embeddings == "random":
            raise UserError(
                "model.params.freeze_embeddings: frozen random embeddings learn nothing; "
                "use embeddings 'word2vec' or a vectors file, or set freeze_embeddings to false."
            )

    @classmethod
    def check_runnable(cls, config: ExperimentConfig, params: WordParams) -> None:  # type: ignore[override]
        if params.embeddings_file is not None:
            try:
                dim = vectors_dim(params.embeddings_file, params.embeddings_format)
            except UserError as exc:
                raise UserError(f"model.params.embeddings: {exc}") from None
            if dim != params.embedding_dim:
                raise UserError(
                    f"model.params.embedding_dim: {params.embedding_dim} does not match the {dim}-dimensional "
                    f"vectors in {params.embeddings_file}; set embedding_dim to {dim}."
                )

    def input_embeddings(self) -> tuple[nn.Module, int]:
        assert self.network is not None, "fit or load the model first"
        return self.network.embedding.embedding, PAD_ID  # every word network reads a WordEmbedding

    # ------------------------------------------------------------------------------------ encoder
    @property
    def vocabulary(self) -> Vocabulary:
        assert isinstance(self.encoder, WordEncoder), "fit or load the model first"
        return self.encoder.vocabulary

    def known_token_share(self, texts: list[str]) -> np.ndarray:
        """Share of each text's tokens (after truncation to max_length: what the network reads) that
        the vocabulary holds, i.e. not mapped to <unk>; a text without tokens counts as 0 (the encoder
        gives it a lone <unk>)."""
        assert isinstance(self.encoder, WordEncoder), "fit or load the model first"
        return np.array(
            [sum(token_id != UNK_ID for token_id in ids) / len(ids) for ids in self.encoder.encode(texts)]
        )

    def encode(self, texts: list[str], labels: np.ndarray | None = None) -> EncodedDataset:
        """``WordEncoder.encode``, from the on-disk token cache (:mod:`imdb_sentiment.text.token_cache`)."""
        assert isinstance(self.encoder, WordEncoder), "fit or load the model first"
        encoder = self.encoder
        return EncodedDataset(
            tokenized_corpus(texts).encode(encoder.vocabulary, encoder.max_length, encoder.truncation), labels
        )

    def build_encoder(self, train: TextDataset, context: FitContext) -> WordEncoder:
        p = self.params
        vocabulary = tokenized_corpus(train.texts).vocabulary(p.min_freq, p.vocab_size)
        context.extra_metrics["vocabulary_size"] = len(vocabulary)
        self.pretrained_matrix = self._pretrained_matrix(vocabulary, train, context)
        return WordEncoder(vocabulary, p.max_length, p.truncation)

    def _pretrained_matrix(
        self, vocabulary: Vocabulary, train: TextDataset, context: FitContext
    ) -> np.ndarray | None:
        p = self.params
        if p.embeddings == "random":
            return None
        if p.embeddings == "word2vec":
            # Train split + unlabeled reviews: the test split is never part of the corpus.
            texts = train.texts + (context.unsup.texts if context.unsup is not None else [])
            trained = train_or_load_word2vec(texts, p.embedding_dim, p.word2vec)
            vectors, source = trained.vectors, str(trained.path)
            context.extra_metrics["word2vec_seconds"] = round(trained.seconds, 1)
            context.extra_metrics["word2vec_cached"] = trained.from_cache
        else:
            vectors, source = load_vectors(p.embeddings, p.embeddings_format), p.embeddings
        matrix, coverage = build_embedding_matrix(vocabulary, vectors, seed=context.seed)
        if matrix.shape[1] != p.embedding_dim:  # check_config catches this for configs; direct use lands here
            raise UserError(
                f"model.params.embedding_dim: {p.embedding_dim} does not match the {matrix.shape[1]}-dimensional "
                f"vectors in {source}; set embedding_dim to {matrix.shape[1]}."
            )
        context.extra_metrics["embeddings_source"] = source
        context.extra_metrics["embedding_coverage"] = coverage.as_dict()
        logger.info("embeddings %s: %.1f%% of vocabulary words, %.1f%% of training tokens covered",
                    source, 100 * coverage.word_share, 100 * coverage.token_share)  # fmt: skip
        return matrix

    def load_encoder(self, directory: Path) -> WordEncoder:
        return WordEncoder.load(directory)

    def make_embedding(self) -> WordEmbedding:
        p = self.params
        return WordEmbedding(
            len(self.vocabulary), p.embedding_dim, p.embedding_dropout, self.pretrained_matrix, p.freeze_embeddings
        )


# ------------------------------------------------------------------------------------------ layers
class WordEmbedding(nn.Module):
    """Embedding lookup + dropout, with padded positions forced to exactly zero."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        dropout: float,
        pretrained: np.ndarray | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        if pretrained is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(torch.from_numpy(pretrained))
        else:
            nn.init.normal_(self.embedding.weight, std=dim**-0.5)  # unit-norm-ish rows, like word2vec
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.embedding.weight.requires_grad_(not freeze)
        self.dropout = nn.Dropout(dropout)
        self.dim = dim

    def forward(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        """(B, T) ids, (B, T) bool mask -> (B, T, dim)."""
        return self.dropout(self.embedding(input_ids)) * mask.unsqueeze(-1)


def token_mask(batch: dict[str, Tensor]) -> Tensor:
    return batch["attention_mask"].bool()


def masked_max(values: Tensor, mask: Tensor) -> Tensor:
    """Max over time (dim 1) of (B, T, D) values at positions where the (B, T) mask is True."""
    return values.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over dim 1 of (B, T) scores; padded positions get exactly zero weight."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)


Pooling = Literal["max", "mean", "max+mean", "last"]


def pool_sequence(states: Tensor, mask: Tensor, pooling: Pooling, last: Tensor | None = None) -> Tensor:
    if pooling == "max":
        return masked_max(states, mask)
    if pooling == "mean":
        return masked_mean(states, mask)
    if pooling == "max+mean":
        return torch.cat([masked_max(states, mask), masked_mean(states, mask)], dim=-1)
    assert last is not None, "'last' pooling needs the final states"
    return last


def pooled_size(width: int, pooling: Pooling) -> int:
    return 2 * width if pooling == "max+mean" else width


def reverse_within_length(values: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first ``length`` steps, leaving its padding at the end (an involution)."""
    steps = torch.arange(values.shape[1], device=values.device).unsqueeze(0)
    index = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


class MaskedRNN(nn.Module):
    """Stacked (bi)directional LSTM/GRU over right-padded batches, without packed sequences.

    Why not ``pack_padded_sequence``: on CPU a packed LSTM runs ~6x slower than a dense one (the dense
    LSTM uses oneDNN's fused kernels). A forward RNN never sees the padding that comes after a token,
    so dense is exact for it; the backward direction runs forward over each row reversed *within its
    length*, which keeps padding at the end as well. Each direction is a separate one-layer module.
    """

    def __init__(
        self,
        cell: Literal["lstm", "gru"],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        rnn_class = nn.LSTM if cell == "lstm" else nn.GRU
        self.directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * self.directions
            self.layers.append(
                nn.ModuleList(rnn_class(size, hidden_size, batch_first=True) for _ in range(self.directions))
            )
        self.dropout = nn.Dropout(dropout)
        self.output_size = hidden_size * self.directions

    def forward(self, inputs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, D) inputs and (B, T) mask -> (B, T, output_size) states (zero at padding) and
        (B, output_size) final states: forward at the last token, backward at the first."""
        lengths = mask.sum(dim=1)
        last_index = (lengths - 1).clamp_min(0)
        rows = torch.arange(inputs.shape[0], device=inputs.device)
        states, weights = inputs, mask.unsqueeze(-1).to(inputs.dtype)
        for depth, directions in enumerate(self.layers):
            if depth > 0:
                states = self.dropout(states)
            forward_states = directions[0](states)[0]
            outputs = [forward_states]
            if self.directions == 2:
                backward_states = directions[1](reverse_within_length(states, lengths))[0]
                outputs.append(reverse_within_length(backward_states, lengths))
            states = torch.cat(outputs, dim=-1) * weights
        hidden = states.shape[-1] // self.directions
        final = states[rows, last_index, :hidden]
        if self.directions == 2:
            final = torch.cat([final, states[:, 0, hidden:]], dim=-1)
        return states, final


class ClassifierHead(nn.Module):
    """Dropout + linear layer from pooled features to one logit per class."""

    def __init__(self, features: int, dropout: float, classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(features, classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(self.dropout(features))
