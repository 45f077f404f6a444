"""``fasttext``: bag of word and hashed-bigram embeddings, averaged, then a linear classifier
(Joulin et al. 2016, "Bag of Tricks for Efficient Text Classification").

Bigram ids are hashed inside the network from consecutive word ids, so the encoder is the ordinary
word encoder and saved models need no bigram dictionary. ``nn.EmbeddingBag`` averages and skips
padding (its ``padding_idx`` is excluded from the mean).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.models.torch_base import NetworkRequest
from imdb_sentiment.models.word.base import ClassifierHead, WordModel, WordParams, token_mask
from imdb_sentiment.text.vocabulary import PAD_ID
from imdb_sentiment.training.outputs import NetworkOutput

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

HASH_PRIME = 1_000_003  # odd multiplier: (first * prime + second) mixes both word ids into the bucket


class FastTextParams(WordParams):
    embedding_dim: int = Field(64, ge=2, le=2048)
    embeddings: str = Field("random", description="Unigram rows: 'random', 'word2vec' or a vectors file.")
    bigrams: bool = Field(True, description="Add hashed word bigrams to the bag.")
    buckets: int = Field(2**18, ge=1, le=2**24, description="Hash buckets for bigrams.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


def bigram_ids(input_ids: Tensor, mask: Tensor, vocab_size: int, buckets: int) -> Tensor:
    """(B, T-1) ids of the hashed bigrams, offset past the vocabulary; PAD where a word is padding."""
    hashed = vocab_size + (input_ids[:, :-1] * HASH_PRIME + input_ids[:, 1:]) % buckets
    return hashed.masked_fill(~(mask[:, :-1] & mask[:, 1:]), PAD_ID)


class FastTextNetwork(nn.Module):
    def __init__(
        self, vocab_size: int, params: FastTextParams, classes: int, pretrained: np.ndarray | None = None
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.buckets = params.buckets if params.bigrams else 0
        dim = params.embedding_dim
        self.bag = nn.EmbeddingBag(vocab_size + self.buckets, dim, mode="mean", padding_idx=PAD_ID)
        with torch.no_grad():
            nn.init.uniform_(self.bag.weight, -(dim**-0.5), dim**-0.5)
            if pretrained is not None:
                self.bag.weight[:vocab_size] = torch.from_numpy(pretrained)
            self.bag.weight[PAD_ID].zero_()
        self.head = ClassifierHead(dim, params.dropout, classes)

    def forward(self, batch: dict[str, Tensor]) -> NetworkOutput:
        mask = token_mask(batch)
        ids = batch["input_ids"].masked_fill(~mask, PAD_ID)
        if self.buckets and ids.shape[1] > 1:
            ids = torch.cat([ids, bigram_ids(ids, mask, self.vocab_size, self.buckets)], dim=1)
        features = self.bag(ids)
        return NetworkOutput(self.head(features), features)


@register_model("fasttext")
class FastTextModel(WordModel):
    Params = FastTextParams
    params: FastTextParams
    description = "fastText: averaged word + hashed bigram embeddings, linear classifier (Joulin et al. 2016)."
    # A bag of embeddings has no per-token layer to integrate along; removing a word is exact for it.
    capabilities = replace(WordModel.capabilities, explanation="occlusion")

    @classmethod
    def check_config(cls, config: ExperimentConfig, params: FastTextParams) -> None:  # type: ignore[override]
        super().check_config(config, params)
        if params.freeze_embeddings:
            raise UserError(
                "model.params.freeze_embeddings: fasttext learns its word and bigram vectors; "
                "set freeze_embeddings to false."
            )

    def build_network(self, request: NetworkRequest) -> nn.Module:
        return FastTextNetwork(len(self.vocabulary), self.params, self.num_classes, self.pretrained_matrix)
