"""Hugging Face fast tokenizers behind the project's :class:`TextEncoder` interface.

Why not ``tokenizer(texts, truncation=True, max_length=...)``: that keeps the head only, and IMDB reviews
put their verdict at the end. Here a review is tokenised whole, *without* special tokens, truncated in
token space (head / tail / head+tail, see :mod:`imdb_sentiment.text.truncation`) to ``max_length`` minus
the special tokens, and only then framed with them ([CLS] ... [SEP], <s> ... </s>).

Tokenising 25,000 reviews takes ~15 s on two cores, so raw token ids are cached per (tokenizer
fingerprint, text hash): a second ``predict`` on the same texts, or a model reloaded in the same process,
never re-tokenises.

Chunk-and-pool: with ``chunk=True`` a long review is split into overlapping windows of ``max_length``
tokens, each window is classified and the logits are mean-pooled per review. The collate function emits
``chunk_index`` (review row of each window) and ``num_chunks`` (windows per review), so the network can
pool back to one row per review and the shared loop, which sees one label per review, is unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imdb_sentiment.errors import UserError
from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.text.truncation import Truncation, truncate

SETTINGS_FILE = "hf_encoder.json"
TOKENIZER_DIR = "tokenizer"
_TOKENIZE_BATCH = 2000
_CACHE_MAX_ENTRIES = 400_000  # ~ 125M token ids at IMDB lengths; cleared wholesale beyond that

# (tokenizer fingerprint, 16-byte text digest) -> raw token ids (no special tokens), int32.
_TOKEN_CACHE: dict[tuple[str, bytes], np.ndarray] = {}


def clear_token_cache() -> None:
    _TOKEN_CACHE.clear()


def load_tokenizer(source: str | Path, **kwargs: Any):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), **kwargs)
    if not tokenizer.is_fast:
        raise UserError(
            f"{source}: only fast (Rust) tokenizers are supported; this one is {type(tokenizer).__name__}."
        )
    return tokenizer


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 16000, lowercase: bool = True):
    """A BERT-style WordPiece tokenizer trained on ``texts`` with the ``tokenizers`` library."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


class HFTokenizerEncoder(TextEncoder):
    def __init__(
        self,
        tokenizer: Any,
        max_length: int = 256,
        truncation: Truncation = "head+tail",
        pad_to_multiple_of: int | None = 8,
        chunk: bool = False,
        chunk_overlap: int = 64,
        max_chunks: int = 4,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.pad_to_multiple_of = pad_to_multiple_of
        self.chunk = chunk
        self.chunk_overlap = chunk_overlap
        self.max_chunks = max_chunks
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.prefix, self.suffix = _special_frame(tokenizer)
        self.body_length = max_length - len(self.prefix) - len(self.suffix)
        if self.body_length < 1:
            raise UserError(f"max_length {max_length} leaves no room besides the special tokens.")
        if chunk and not 0 <= chunk_overlap < self.body_length:
            raise UserError(
                f"chunk_overlap {chunk_overlap} must be below max_length minus special tokens ({self.body_length})."
            )
        # The backend's saved truncation/padding (all-MiniLM ships 128/fixed-128) would silently cut
        # reviews: work on a copy with both switched off.
        self._backend = copy.deepcopy(tokenizer.backend_tokenizer)
        self._backend.no_truncation()
        self._backend.no_padding()
        self.fingerprint = hashlib.sha1(self._backend.to_str().encode()).hexdigest()[:16]

    # ------------------------------------------------------------------------------------- encoding
    @property
    def chunk_step(self) -> int:
        return self.body_length - self.chunk_overlap

    def tokenize(self, texts: list[str]) -> list[np.ndarray]:
        """Raw token ids of whole texts, no special tokens, served from the cache where possible."""
        keys = [(self.fingerprint, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
                for text in texts]  # fmt: skip
        missing = [index for index, key in enumerate(keys) if key not in _TOKEN_CACHE]
        if len(_TOKEN_CACHE) + len(missing) > _CACHE_MAX_ENTRIES:
            _TOKEN_CACHE.clear()
            missing = list(range(len(texts)))
        fresh: dict[int, np.ndarray] = {}
        for start in range(0, len(missing), _TOKENIZE_BATCH):
            batch = missing[start : start + _TOKENIZE_BATCH]
            encodings = self._backend.encode_batch([texts[i] for i in batch], add_special_tokens=False)
            for index, encoding in zip(batch, encodings, strict=True):
                fresh[index] = np.asarray(encoding.ids, dtype=np.int32)
                _TOKEN_CACHE[keys[index]] = fresh[index]
        return [fresh[i] if i in fresh else _TOKEN_CACHE[key] for i, key in enumerate(keys)]

    def bodies(self, texts: list[str]) -> list[list[int]]:
        """The token ids the network reads of each text, without special tokens: truncated to one
        window, or in chunk mode to what ``max_chunks`` windows cover."""
        cap = self.body_length + (self.max_chunks - 1) * self.chunk_step if self.chunk else self.body_length
        return [truncate(ids.tolist(), cap, self.truncation) for ids in self.tokenize(texts)]

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Model inputs with special tokens; in chunk mode, the (capped) body tokens to be windowed."""
        bodies = self.bodies(texts)
        return bodies if self.chunk else [self.prefix + body + self.suffix for body in bodies]

    def token_spans(self, texts: list[str]) -> list[list[tuple[int, int] | None]]:
        """The fast tokenizer's offset mapping, truncated like :meth:`bodies` (same cap, same strategy)
        and framed like :meth:`encode`; in chunk mode aligned with the capped bodies."""
        cap = self.body_length + (self.max_chunks - 1) * self.chunk_step if self.chunk else self.body_length
        spans: list[list[tuple[int, int] | None]] = []
        for encoding in self._backend.encode_batch(texts, add_special_tokens=False):
            body: list[tuple[int, int] | None] = [tuple(offset) for offset in encoding.offsets]
            body = truncate(body, cap, self.truncation)
            spans.append(body if self.chunk else [None] * len(self.prefix) + body + [None] * len(self.suffix))
        return spans

    def unknown_token_id(self) -> int | None:
        """The id of the token this tokenizer emits for what it does not know ([UNK]), or None when it
        never emits one: byte-level BPE (GPT-2, RoBERTa) and byte fallback spell anything in bytes."""
        if self.tokenizer.unk_token_id is None:
            return None
        spec = json.loads(self._backend.to_str())
        model = spec.get("model") or {}
        if model.get("byte_fallback") or ("unk_token" in model and model["unk_token"] is None):
            return None
        if _has_type(spec.get("pre_tokenizer"), "ByteLevel"):
            return None
        return int(self.tokenizer.unk_token_id)

    def known_token_share(self, texts: list[str]) -> np.ndarray | None:
        """Share of the tokens the network reads of each text that are not the unknown token (0 for
        a text without tokens); None for tokenizers that never emit one (see unknown_token_id)."""
        unknown = self.unknown_token_id()
        if unknown is None:
            return None
        shares = np.zeros(len(texts))
        for row, body in enumerate(self.bodies(texts)):
            if body:
                shares[row] = sum(token_id != unknown for token_id in body) / len(body)
        return shares

    def window_starts(self, length: int) -> list[int]:
        """Where the overlapping windows over a body of ``length`` tokens start."""
        starts = [0]
        while starts[-1] + self.body_length < length:
            starts.append(starts[-1] + self.chunk_step)
        return starts

    def windows(self, body: list[int]) -> list[list[int]]:
        """Overlapping windows covering ``body``, each framed with the special tokens."""
        return [
            self.prefix + body[start : start + self.body_length] + self.suffix
            for start in self.window_starts(len(body))
        ]

    # ------------------------------------------------------------------------------------- batching
    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.chunk:
            rows: list[list[int]] = []
            counts = []
            for example in examples:
                windows = self.windows(list(example["input_ids"]))
                rows.extend(windows)
                counts.append(len(windows))
        else:
            rows = [list(example["input_ids"]) for example in examples]
        width = max(1, max(len(row) for row in rows))
        if self.pad_to_multiple_of:
            # Tensor-core / AMX friendly shapes, but never wider than the longest allowed input.
            rounded = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
            width = max(width, min(rounded, self.max_length))
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        if "label" in examples[0]:
            batch["labels"] = torch.as_tensor([example["label"] for example in examples], dtype=torch.long)
        if self.chunk:
            batch["num_chunks"] = torch.as_tensor(counts, dtype=torch.long)
            batch["chunk_index"] = torch.repeat_interleave(torch.arange(len(examples)), batch["num_chunks"])
        return batch

    # ------------------------------------------------------------------------------------ save/load
    def settings(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "truncation": self.truncation,
            "pad_to_multiple_of": self.pad_to_multiple_of,
            "chunk": self.chunk,
            "chunk_overlap": self.chunk_overlap,
            "max_chunks": self.max_chunks,
        }

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
        (directory / SETTINGS_FILE).write_text(json.dumps(self.settings(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> HFTokenizerEncoder:
        directory = Path(directory)
        settings = json.loads((directory / SETTINGS_FILE).read_text())
        return cls(load_tokenizer(directory / TOKENIZER_DIR), **settings)


def _special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one sequence ([CLS] / [SEP], <s> / </s>).

    transformers 5 dropped ``build_inputs_with_special_tokens``; encoding a probe with and without
    special tokens recovers the frame for any fast tokenizer.
    """
    probe = "a"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    framed = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(framed) - len(bare) + 1):
        if framed[start : start + len(bare)] == bare:
            return list(framed[:start]), list(framed[start + len(bare) :])
    raise UserError(f"Cannot locate the special tokens of tokenizer {type(tokenizer).__name__}.")


def _has_type(node: Any, name: str) -> bool:
    """Whether a tokenizer.json component (possibly a Sequence of them) is or contains ``name``."""
    if isinstance(node, dict):
        return node.get("type") == name or any(_has_type(value, name) for value in node.values())
    if isinstance(node, list):
        return any(_has_type(value, name) for value in node)
    return False
