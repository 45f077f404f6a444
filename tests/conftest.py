"""Shared fixtures: one tiny, deterministic set of reviews written in every supported layout.

Every layout fixture holds the *same* reviews (see :func:`make_reviews`), so tests can compare
loaders against each other. Positive reviews carry "great / wonderful / excellent ..." and negative
ones "awful / boring / terrible ...", mixed with neutral filler, so even tiny models learn them.
Texts keep raw IMDB quirks (``<br /><br />``, ``&amp;``, double quotes, non-ASCII) like the
real files. Layout fixtures are function-scoped (each writes into its own ``tmp_path`` in a few
milliseconds, so tests may modify or corrupt them); ``tiny_imdb_parquet_shared`` is a read-only,
session-scoped copy for tests that only read.

Counts: train 40 (20 pos / 20 neg), test 40 (20 / 20), unsup 20. As in aclImdb, ids restart at 0 in
every split/polarity folder, so only (label, id) is unique within a split.
"""

from __future__ import annotations

import csv
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

POSITIVE_WORDS = ("great", "wonderful", "excellent", "brilliant", "superb", "loved", "masterpiece")
NEGATIVE_WORDS = ("awful", "boring", "terrible", "dreadful", "waste", "hated", "worst")
FILLER_WORDS = (
    "the", "movie", "film", "plot", "actor", "actress", "scene", "camera", "story", "director",
    "music", "ending", "character", "cast", "script", "was", "with", "and", "a", "of", "it", "this",
    "that", "time", "watch", "screen", "sequel", "minutes", "role", "effects",
)  # fmt: skip
DECORATIONS = (
    "<br /><br />",  # the real files' line breaks
    " &amp; ",  # HTML entities
    ' "quoted words" ',  # Kaggle escapes these as \"
    " café déjà vu ",  # non-ASCII, UTF-8 in every layout
    " it's ",
)
SPLIT_SIZES = {"train": 40, "test": 40, "unsup": 20}


@dataclass(frozen=True)
class TinyReview:
    split: str  # train / test / unsup
    id: int  # number before "_" in aclImdb file names; restarts per split and polarity
    rating: int  # 7-10 positive, 1-4 negative, 0 unsup
    label: int  # 1 positive, 0 negative, -1 unlabeled
    text: str  # raw text as in the original files (HTML included)

    @property
    def folder(self) -> str:
        return {1: "pos", 0: "neg", -1: "unsup"}[self.label]

    @property
    def kaggle_id(self) -> str:
        return f"{self.id}_{self.rating}"


def _text(rng: random.Random, label: int, index: int) -> str:
    words = rng.choices(FILLER_WORDS, k=rng.randint(8, 20))
    cues = {1: POSITIVE_WORDS, 0: NEGATIVE_WORDS, -1: POSITIVE_WORDS + NEGATIVE_WORDS}[label]
    for cue in rng.sample(cues, 3):
        words.insert(rng.randrange(len(words) + 1), cue)
    text = " ".join(words)
    decoration = DECORATIONS[index % len(DECORATIONS)]
    cut = len(text) // 2
    cut = text.index(" ", cut) if " " in text[cut:] else cut
    return f"{text[:cut].capitalize()}{decoration}{text[cut:].strip()}."


def make_reviews(sizes: dict[str, int] | None = None, seed: int = 0) -> list[TinyReview]:
    """Deterministic reviews: labelled splits are half positive, half negative."""
    rng = random.Random(seed)
    reviews: list[TinyReview] = []
    for split, size in (sizes or SPLIT_SIZES).items():
        labels = [-1] * size if split == "unsup" else [1] * (size // 2) + [0] * (size - size // 2)
        next_id = {1: 0, 0: 0, -1: 0}
        for label in labels:
            rating = {1: rng.randint(7, 10), 0: rng.randint(1, 4), -1: 0}[label]
            reviews.append(TinyReview(split, next_id[label], rating, label, _text(rng, label, len(reviews))))
            next_id[label] += 1
    texts = [review.text for review in reviews]
    assert len(set(texts)) == len(texts), "fixture texts must be unique"
    assert not any("\\" in text or "\t" in text for text in texts)  # keeps the Kaggle quoting exact
    return reviews


# --------------------------------------------------------------------------------------------------
# Writers (plain functions so a test can write a variant into its own folder)


def write_imdb_parquet(folder: Path, reviews: list[TinyReview]) -> Path:
    """train/test/unsup.parquet with the real columns: id, rating, label (int64), text (str)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test", "unsup"):
        rows = [r for r in reviews if r.split == split]
        if not rows:
            continue
        frame = pd.DataFrame(
            {
                "id": pd.array([r.id for r in rows], dtype="int64"),
                "rating": pd.array([r.rating for r in rows], dtype="int64"),
                "label": pd.array([r.label for r in rows], dtype="int64"),
                "text": [r.text for r in rows],
            }
        )
        frame.to_parquet(folder / f"{split}.parquet", compression="zstd", index=False)
    return folder


def write_aclimdb(parent: Path, reviews: list[TinyReview]) -> Path:
    """``parent/aclImdb/{train,test}/{pos,neg}/ID_RATING.txt`` + ``train/unsup``; returns the aclImdb folder."""
    root = parent / "aclImdb"
    for review in reviews:
        split = "train" if review.split == "unsup" else review.split
        file = root / split / review.folder / f"{review.id}_{review.rating}.txt"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(review.text.encode("utf-8"))
    # Extra files the real tree has; loaders must ignore them.
    (root / "README").write_text("Large Movie Review Dataset v1.0 (tiny test copy)\n")
    (root / "imdb.vocab").write_text("the\nand\na\n")
    (root / "train" / "urls_pos.txt").write_text("http://www.imdb.com/title/tt0000000/usercomments\n")
    (root / "train" / "labeledBow.feat").write_text("9 0:9 1:1\n")
    return root


def build_archive(tree: Path, archive: Path) -> Path:
    """``aclImdb_v1.tar.gz`` whose members are named ``aclImdb/...`` like the official archive."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(tree, arcname="aclImdb")
    return archive


def _kaggle_quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def write_kaggle(folder: Path, reviews: list[TinyReview], seed: int = 0) -> Path:
    """The word2vec-nlp-tutorial TSVs: quoted ``"ID_RATING"`` ids, tabs, backslash-escaped quotes,
    rows shuffled like the originals."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    layouts = (
        ("labeledTrainData.tsv", "train", True),
        ("testData.tsv", "test", False),
        ("unlabeledTrainData.tsv", "unsup", False),
    )
    for name, split, with_sentiment in layouts:
        rows = [r for r in reviews if r.split == split]
        rng.shuffle(rows)
        header = "id\tsentiment\treview" if with_sentiment else "id\treview"
        lines = [header]
        for r in rows:
            middle = f"\t{r.label}\t" if with_sentiment else "\t"
            lines.append(f'"{r.kaggle_id}"{middle}{_kaggle_quote(r.text)}')
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_table(file: Path, reviews: list[TinyReview]) -> Path:
    """A plain CSV (id, text, label 0/1) of the labelled reviews."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for r in reviews:
            if r.label >= 0:
                writer.writerow([f"{r.split}-{r.folder}-{r.id}", r.text, r.label])
    return file


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def tiny_reviews() -> list[TinyReview]:
    """The reviews every layout fixture holds (treat as read-only)."""
    return make_reviews()


@pytest.fixture
def tiny_imdb_parquet(tmp_path: Path, tiny_reviews: list[TinyReview]) -> Path:
    """Folder with train.parquet / test.parquet / unsup.parquet (40 / 40 / 20 rows)."""
    return write_imdb_parquet(tmp_path / "imdb", tiny_reviews)


@pytest.fixture(scope="session")
def tiny_imdb_parquet_shared(tmp_path_factory: pytest.TempPathFactory, tiny_reviews: list[TinyReview]) -> Path:
    """Like ``tiny_imdb_parquet`` but written once per session: read it, never modify it."""
    return write_imdb_parquet(tmp_path_factory.mktemp("shared") / "imdb", tiny_reviews)


@pytest.fixture(scope="session")
def tiny_imdb_80(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``helpers.write_tiny_parquet_imdb`` with 80 reviews per split, written once per session: read it,
    never modify it (the pipeline tests' runs write only into their own folders)."""
    from helpers import write_tiny_parquet_imdb

    folder = tmp_path_factory.mktemp("imdb-80") / "imdb"
    write_tiny_parquet_imdb(folder, size=80)
    return folder


@pytest.fixture
def tiny_aclimdb(tmp_path: Path, tiny_reviews: list[TinyReview]) -> Path:
    """The ``aclImdb`` folder (its parent, ``tmp_path / "acl"``, is accepted by the loader too)."""
    return write_aclimdb(tmp_path / "acl", tiny_reviews)


@pytest.fixture
def tiny_archive(tmp_path: Path, tiny_reviews: list[TinyReview]) -> Path:
    """``aclImdb_v1.tar.gz`` built with tarfile from an aclImdb tree, alone in its folder."""
    tree = write_aclimdb(tmp_path / "archive-tree", tiny_reviews)
    return build_archive(tree, tmp_path / "archive" / "aclImdb_v1.tar.gz")


@pytest.fixture
def tiny_kaggle(tmp_path: Path, tiny_reviews: list[TinyReview]) -> Path:
    """Folder with labeledTrainData.tsv, testData.tsv and unlabeledTrainData.tsv."""
    return write_kaggle(tmp_path / "kaggle", tiny_reviews)


@pytest.fixture
def tiny_table(tmp_path: Path, tiny_reviews: list[TinyReview]) -> Path:
    """``reviews.csv`` with columns id, text, label (0/1): the 80 labelled reviews."""
    return write_table(tmp_path / "reviews.csv", tiny_reviews)
