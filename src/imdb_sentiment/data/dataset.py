"""In-memory labelled text collections and the splits of a benchmark."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from imdb_sentiment.data.labels import SENTIMENT, LabelSpace

UNLABELED = -1


@dataclass
class TextDataset:
    """Texts with integer labels (class indices of ``classes``; -1 unlabeled) and string ids. The
    default classes are sentiment: 0 negative, 1 positive."""

    texts: list[str]
    labels: np.ndarray
    ids: list[str] = field(default_factory=list)
    classes: LabelSpace = SENTIMENT

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.ids:
            self.ids = [str(index) for index in range(len(self.texts))]
        if not len(self.texts) == len(self.labels) == len(self.ids):
            raise ValueError("texts, labels and ids must have the same length")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray | list[int]) -> TextDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return TextDataset(
            texts=[self.texts[i] for i in indices],
            labels=self.labels[indices],
            ids=[self.ids[i] for i in indices],
            classes=self.classes,
        )

    @property
    def is_labeled(self) -> bool:
        return len(self) > 0 and bool((self.labels != UNLABELED).all())

    def label_counts(self) -> dict[str, int]:
        return {name: int((self.labels == value).sum()) for value, name in enumerate(self.classes.names)}

    def content_digest(self) -> str:
        """sha256 over (id, label, text), independent of row order and storage format."""
        digest = hashlib.sha256()
        for item_id, label, text in sorted(zip(self.ids, self.labels.tolist(), self.texts, strict=True)):
            digest.update(f"{item_id}\t{label}\t".encode())
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\n")
        return digest.hexdigest()


@dataclass
class DatasetSplits:
    """What a loader returns: train (labelled), optional test and unlabeled texts."""

    train: TextDataset | None
    test: TextDataset | None
    unsup: TextDataset | None = None
    source: str = ""
    format: str = ""
    files: dict[str, str] = field(default_factory=dict)  # file -> sha256, where cheap to compute

    def checksums(self) -> dict[str, str]:
        sums = {f"{name}.content_sha256": part.content_digest() for name, part in self.parts().items()}
        sums.update({f"file:{path}": digest for path, digest in self.files.items()})
        return sums

    def parts(self) -> dict[str, TextDataset]:
        return {
            name: part
            for name, part in (("train", self.train), ("test", self.test), ("unsup", self.unsup))
            if part is not None
        }
