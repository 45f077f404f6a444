"""The one inference path of every PyTorch model (the word models, hf / minilm / bert-scratch, the
LLM scorers): encoded texts -> length-sorted batches (each rank its share under a launcher) ->
:func:`~imdb_sentiment.training.loop.predict_logits` -> logits in the texts' order -> probabilities."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.training.batching import EncodedDataset, make_loader
from imdb_sentiment.training.loop import predict_logits
from imdb_sentiment.training.runtime import Runtime


def dataset_logits(
    network: nn.Module,
    encoder: TextEncoder,
    dataset: EncodedDataset,
    batch_size: int,
    runtime: Runtime,
    *,
    device: torch.device | None = None,
    bf16: bool | None = None,
    show_progress: bool = False,
    num_classes: int = 2,
) -> np.ndarray:
    """One row of logits per encoded text, in the dataset's order. ``device`` / ``bf16`` default to
    the runtime's (a model may run a copy elsewhere, e.g. an int8 copy on the CPU); the network is
    moved there. Under a launcher every rank must call this the same number of times: the ranks'
    shares are gathered. ``num_classes``: the logits' width, which an empty ``dataset`` cannot show."""
    device = runtime.device if device is None else device
    bf16 = runtime.bf16 if bf16 is None else bf16
    loader = make_loader(
        dataset, encoder, batch_size, shuffle=False, rank=runtime.rank, world_size=runtime.world_size
    )
    return predict_logits(network.to(device), loader, device, bf16, show_progress, num_classes)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (float64) of rows of logits; every backend turns logits into probabilities here."""
    return torch.softmax(torch.from_numpy(np.asarray(logits)).double(), dim=-1).numpy()
