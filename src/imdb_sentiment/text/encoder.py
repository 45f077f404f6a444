"""The interface between texts and a network: token ids in, padded tensors out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch


class TextEncoder(ABC):
    """Turns texts into lists of token ids and lists of examples into padded batches.

    Both word vocabularies and Hugging Face tokenizers implement this, so the batching, the training
    loop and evaluation never care which one a model uses.
    """

    pad_id: int = 0

    @abstractmethod
    def encode(self, texts: list[str]) -> list[list[int]]: ...

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad ``input_ids`` to the longest example in the batch (dynamic padding)."""
        return pad_batch(examples, self.pad_id)

    def token_spans(self, texts: list[str]) -> list[list[tuple[int, int] | None]]:
        """For each text, the (start, end) character span in that text of every token ``encode`` gives
        it, position for position; None for tokens that stand for no text (special tokens, the
        placeholder of an empty text). Explanations map attributions back to words with it."""
        raise NotImplementedError(f"{type(self).__name__} cannot map tokens to character offsets")

    @abstractmethod
    def save(self, directory: Path) -> None: ...


def pad_batch(examples: list[dict[str, Any]], pad_id: int, min_length: int = 1) -> dict[str, torch.Tensor]:
    longest = max(min_length, max(len(example["input_ids"]) for example in examples))
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, example in enumerate(examples):
        ids = example["input_ids"]
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "label" in examples[0]:
        batch["labels"] = torch.as_tensor([example["label"] for example in examples], dtype=torch.long)
    return batch
