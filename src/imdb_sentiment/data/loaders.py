"""Readers for every supported dataset layout.

Supported: the Parquet layout of ``../shared/data/imdb``; the official ``aclImdb/`` folder; the
``aclImdb_v1.tar.gz`` archive itself (read in place, no extraction); the Kaggle word2vec-nlp-tutorial
TSV files; the MR ``rt-polarity.pos/.neg`` files; and any CSV / TSV / JSONL / Parquet table with
configurable columns. Every failure a user can cause becomes a one-line :class:`UserError`.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data.cleaning import clean_texts
from imdb_sentiment.data.dataset import UNLABELED, DatasetSplits, TextDataset
from imdb_sentiment.data.encoding import decode
from imdb_sentiment.data.labels import RATINGS, SENTIMENT, LabelSpace, infer_label_space
from imdb_sentiment.data.tables import (
    read_bytes,
    read_parquet,
    read_table_file,
    require_columns,
    text_cells,
    unreadable_message,
)
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import sha256_file

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
ACLIMDB_NAME = re.compile(r"(?:^|/)(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
KAGGLE_FILES = ("labeledTrainData.tsv", "testData.tsv", "unlabeledTrainData.tsv")


def check_texts(texts: list[str], where: str) -> None:
    empty = [index for index, text in enumerate(texts) if not text.strip()]
    if empty:
        raise UserError(
            f"{where}: {len(empty)} empty or whitespace-only text(s), first at row {empty[0] + 1}. "
            "Remove those rows and try again."
        )


# --------------------------------------------------------------------------------------------------
# Layout detection


def detect_format(path: Path) -> str:
    try:
        return _detect_format(path)
    except OSError as exc:  # a folder we may not list (mode 000), a broken disk
        raise UserError(unreadable_message(Path(exc.filename or path), exc)) from None


def _detect_format(path: Path) -> str:
    if not path.exists():
        raise UserError(
            f"Data path {path} does not exist. Point --data at an aclImdb folder, aclImdb_v1.tar.gz, "
            "a Parquet folder, the Kaggle TSV folder or a CSV/TSV/JSONL/Parquet file, or run "
            "'imdb-sentiment data download'."
        )
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            return "aclimdb-archive"
        if name in (n.lower() for n in KAGGLE_FILES):
            return "kaggle"
        if path.suffix.lower() in TABLE_SUFFIXES:
            return "table"
        if name.startswith("rt-polarity"):
            return "mr"
        raise UserError(
            f"Cannot tell the format of {path}: use a .csv, .tsv, .jsonl or .parquet file, or pass --format."
        )
    if (path / "train.parquet").exists() or (path / "test.parquet").exists():
        return "imdb-parquet"
    if (path / "aclImdb").is_dir() or (path / "train" / "pos").is_dir() or (path / "test" / "pos").is_dir():
        return "aclimdb"
    if any((path / name).exists() for name in KAGGLE_FILES):
        return "kaggle"
    if (path / "rt-polarity.pos").exists():
        return "mr"
    if (path / "aclImdb_v1.tar.gz").exists():
        return "aclimdb-archive"
    found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
    raise UserError(
        f"No known dataset layout in {path} (found: {found}). Expected train.parquet/test.parquet, "
        "aclImdb/, aclImdb_v1.tar.gz, the Kaggle TSV files or rt-polarity.pos/.neg."
    )


# --------------------------------------------------------------------------------------------------
# Readers. Each returns raw (uncleaned) splits.


def read_imdb_parquet(path: Path, spec: DataConfig) -> DatasetSplits:
    splits: dict[str, TextDataset] = {}
    files = {}
    for split in ("train", "test", "unsup"):
        file = path / f"{split}.parquet"
        if not file.exists():
            continue
        frame = read_parquet(file)
        column = "rating" if spec.target == "rating" else "label"
        require_columns(frame, ["text"] + ([column] if split != "unsup" else []), file)
        texts = text_cells(frame["text"], file, "text")
        classes = _imdb_classes(spec)
        labels = (
            np.full(len(frame), UNLABELED, dtype=np.int64)
            if split == "unsup"
            else classes.encode(frame[column].tolist(), str(file), column)
        )
        ids = frame["id"].astype(str).tolist() if "id" in frame else []
        splits[split] = TextDataset(texts, labels, ids, classes)
        files[str(file)] = sha256_file(file)
    if "train" not in splits and "test" not in splits:
        raise UserError(f"{path} has neither train.parquet nor test.parquet.")
    return DatasetSplits(splits.get("train"), splits.get("test"), splits.get("unsup"), files=files)


def read_aclimdb_folder(path: Path, spec: DataConfig) -> DatasetSplits:
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    encoding = spec.encoding or "utf-8"

    def members() -> Iterable[tuple[str, Callable[[], bytes]]]:
        for file in sorted(root.glob("*/*/*.txt")):
            yield file.relative_to(root).as_posix(), lambda file=file: read_bytes(file)

    return _collect_aclimdb(members(), encoding, str(root), _imdb_classes(spec))


def read_aclimdb_archive(path: Path, spec: DataConfig) -> DatasetSplits:
    if path.is_dir():
        path = path / "aclImdb_v1.tar.gz"
    encoding = spec.encoding or "utf-8"
    try:
        with tarfile.open(path, "r:*") as archive:

            def members() -> Iterable[tuple[str, Callable[[], bytes]]]:
                for member in archive:
                    if member.isfile() and member.name.endswith(".txt"):
                        handle = archive.extractfile(member)
                        if handle is not None:
                            yield member.name, handle.read

            splits = _collect_aclimdb(members(), encoding, str(path), _imdb_classes(spec))
            # tarfile stops quietly at a cut-off plain .tar; a complete one ends in a zero block.
            if archive.fileobj.tell() - archive.offset != tarfile.BLOCKSIZE:
                raise tarfile.ReadError("truncated: no end-of-archive marker")
    except PermissionError as exc:  # unreadable, not corrupt: keep the copy
        raise UserError(unreadable_message(path, exc)) from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise UserError(
            f"{path} is corrupt or truncated ({type(exc).__name__}). Delete it and run "
            "'imdb-sentiment data download' again, or point --data at a good copy."
        ) from None
    splits.files = {str(path): sha256_file(path)}
    return splits


def _imdb_classes(spec: DataConfig) -> LabelSpace:
    """The classes of the IMDB layouts: sentiment, or the 8 star ratings (``data.target: rating``)."""
    return RATINGS if spec.target == "rating" else SENTIMENT


def _collect_aclimdb(
    members: Iterable[tuple[str, Callable[[], bytes]]], encoding: str, where: str, classes: LabelSpace
) -> DatasetSplits:
    parts: dict[str, tuple[list[str], list[int], list[str]]] = {
        split: ([], [], []) for split in ("train", "test", "unsup")
    }
    for name, read in members:
        match = ACLIMDB_NAME.search(name)
        if not match:
            continue
        split, polarity, item_id, rating = match.groups()
        if polarity == "unsup":
            split = "unsup"
        texts, labels, ids = parts[split]
        texts.append(decode(read(), encoding, f"{where}/{name}"))
        if polarity == "unsup":
            labels.append(UNLABELED)
        elif classes.is_sentiment:
            labels.append({"pos": 1, "neg": 0}[polarity])
        else:
            labels.append(int(classes.encode([rating], f"{where}/{name}", "the rating in the file name")[0]))
        ids.append(item_id)
    if not parts["train"][0] and not parts["test"][0]:
        raise UserError(f"{where} holds no train/pos, train/neg, test/pos or test/neg review files.")
    datasets = {
        split: TextDataset(*part, classes=classes if split != "unsup" else SENTIMENT) if part[0] else None
        for split, part in parts.items()
    }
    return DatasetSplits(datasets["train"], datasets["test"], datasets["unsup"])


def read_kaggle(path: Path, spec: DataConfig) -> DatasetSplits:
    folder = path.parent if path.is_file() else path
    encoding = spec.encoding or "utf-8"
    result: dict[str, TextDataset] = {}
    files = {}
    for split, name in (
        ("train", "labeledTrainData.tsv"),
        ("test", "testData.tsv"),
        ("unsup", "unlabeledTrainData.tsv"),
    ):
        file = folder / name
        if not file.exists():
            continue
        frame = read_table_file(file, "tsv", encoding)
        require_columns(frame, ["id", "review"] + (["sentiment"] if split == "train" else []), file)
        ids = frame["id"].astype(str).str.strip('"').tolist()
        classes = _imdb_classes(spec)
        if split == "unsup":
            labels = np.full(len(ids), UNLABELED, dtype=np.int64)
        elif classes.is_sentiment and split == "train":
            labels = classes.encode(frame["sentiment"], str(file), "sentiment")
        elif classes.is_sentiment:
            labels = np.asarray([_label_from_rating(item_id, file) for item_id in ids], dtype=np.int64)
        else:  # ratings: both labelled files carry them in their ids
            labels = classes.encode([_rating_of(item_id, file) for item_id in ids], str(file), "the rating in id")
        result[split] = TextDataset(
            text_cells(frame["review"], file, "review"), labels, ids, classes if split != "unsup" else SENTIMENT
        )
        files[str(file)] = sha256_file(file)
    if "train" not in result and "test" not in result:
        raise UserError(f"{folder} has neither labeledTrainData.tsv nor testData.tsv.")
    return DatasetSplits(result.get("train"), result.get("test"), result.get("unsup"), files=files)


def _rating_of(item_id: str, file: Path) -> int:
    """Kaggle ids are ``{id}_{rating}``."""
    try:
        return int(item_id.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise UserError(f"{file}: id {item_id!r} does not end in _RATING, so no label follows.") from None


def _label_from_rating(item_id: str, file: Path) -> int:
    """Kaggle test ids are ``{id}_{rating}``; IMDB labels rating >= 7 positive, <= 4 negative."""
    rating = _rating_of(item_id, file)
    if 5 <= rating <= 6:
        raise UserError(f"{file}: id {item_id!r} has a neutral rating; IMDB test ids never do.")
    return 1 if rating >= 7 else 0


def read_mr(path: Path, spec: DataConfig) -> DatasetSplits:
    folder = path.parent if path.is_file() else path
    if spec.target == "rating":
        raise UserError(f"{folder}: MR sentences carry no star ratings; data.target: rating needs an IMDB layout.")
    encoding = spec.encoding or "latin-1"
    texts, labels, ids, files = [], [], [], {}
    for polarity, label in (("pos", 1), ("neg", 0)):
        file = folder / f"rt-polarity.{polarity}"
        if not file.exists():
            raise UserError(f"{folder} lacks rt-polarity.{polarity}; MR needs both .pos and .neg files.")
        # split("\n"), not splitlines(): Latin-1 byte 0x85 decodes to U+0085, which splitlines() breaks on.
        lines = decode(read_bytes(file), encoding, str(file)).split("\n")
        for number, line in enumerate(lines):
            if line.strip():
                texts.append(line)
                labels.append(label)
                ids.append(f"{polarity}-{number}")
        files[str(file)] = sha256_file(file)
    return DatasetSplits(None, TextDataset(texts, labels, ids), files=files)


def read_table(path: Path, spec: DataConfig) -> DatasetSplits:
    """A user's table. Without ``test_path`` the whole table is returned as 'test' and 'train';
    :func:`imdb_sentiment.data.prepare_splits` carves the held-out part."""
    if spec.target == "rating":
        raise UserError(
            f"{path}: data.target: rating reads the IMDB layouts; for a table, name its rating column with "
            "data.label_column (and set data.ordinal: true)."
        )
    texts, cells, ids = _read_labeled_table(path, spec)
    classes = infer_label_space(cells, str(path), spec.label_column, spec.labels, spec.ordinal)
    labeled = TextDataset(texts, classes.encode(cells, str(path), spec.label_column), ids, classes)
    files = {str(path): sha256_file(path)}
    test = None
    if spec.test_path:
        test_file = Path(spec.test_path)
        texts, cells, ids = _read_labeled_table(test_file, spec)
        test = TextDataset(texts, classes.encode(cells, str(test_file), spec.label_column), ids, classes)
        files[str(test_file)] = sha256_file(test_file)
    return DatasetSplits(labeled, test, files=files)


def _read_labeled_table(path: Path, spec: DataConfig) -> tuple[list[str], list[object], list[str]]:
    """A labelled table's (texts, label cells, ids); the classes follow from the training table's cells."""
    if not path.is_file():
        raise UserError(f"Data file {path} does not exist.")
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"{path}: unsupported file type; use .csv, .tsv, .jsonl or .parquet.")
    frame = read_table_file(path, kind, spec.encoding or "utf-8")
    columns = [spec.text_column, spec.label_column, *([spec.id_column] if spec.id_column else [])]
    require_columns(frame, columns, path)
    frame = frame.dropna(subset=[spec.label_column]) if frame[spec.label_column].isna().all() else frame
    if frame[spec.label_column].isna().any():
        row = int(np.flatnonzero(frame[spec.label_column].isna().to_numpy())[0]) + 1
        raise UserError(f"{path}: column {spec.label_column!r} is empty at row {row}. Fill or drop it.")
    texts = text_cells(frame[spec.text_column], path, spec.text_column)
    ids = frame[spec.id_column].astype(str).tolist() if spec.id_column else []
    return texts, frame[spec.label_column].tolist(), ids


def read_texts_table(
    path: Path, text_column: str | None, encoding: str, id_column: str | None = None
) -> tuple[list[str], list[str]]:
    """Unlabelled texts (for ``predict --file``): returns (texts, ids).

    Without a text column, 'text' is used, else 'review' (Kaggle's testData.tsv); without an id
    column, 'id' is used when the table has one.
    """
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:  # plain text: one review per line
        raw = decode(read_bytes(path), encoding, str(path))
        texts = [line.rstrip("\r") for line in raw.split("\n") if line.strip()]
        if not texts:
            raise UserError(
                f"{path} holds no texts (it is empty or has only blank lines; one text per line expected)."
            )
        return texts, [str(i) for i in range(len(texts))]
    if kind != "parquet" and path.is_file() and path.stat().st_size < 4096 and not read_bytes(path).strip():
        raise UserError(f"{path} holds no texts (the file is empty).")
    frame = read_table_file(path, kind, encoding)
    if frame.empty:
        raise UserError(f"{path} holds no texts (no rows{' below its header' if len(frame.columns) else ''}).")
    if text_column is None:
        text_column = next((c for c in ("text", "review") if c in frame.columns), "text")
    if id_column is None and "id" in frame.columns:
        id_column = "id"
    require_columns(frame, [text_column] + ([id_column] if id_column else []), path)
    texts = text_cells(frame[text_column], path, text_column)
    if not any(text.strip() for text in texts):
        raise UserError(f"{path} holds no texts: every value of column {text_column!r} is empty.")
    ids = (
        frame[id_column].astype(str).str.strip('"').tolist() if id_column else [str(i) for i in range(len(texts))]
    )
    return texts, ids


READERS: dict[str, Callable[[Path, DataConfig], DatasetSplits]] = {
    "imdb-parquet": read_imdb_parquet,
    "aclimdb": read_aclimdb_folder,
    "aclimdb-archive": read_aclimdb_archive,
    "kaggle": read_kaggle,
    "mr": read_mr,
    "table": read_table,
}


def read_dataset(path: Path, spec: DataConfig) -> DatasetSplits:
    """Read and clean a dataset in any supported layout."""
    fmt = spec.format if spec.format != "auto" else detect_format(path)
    if not path.exists():
        detect_format(path)  # raises the helpful message
    if fmt != "table" and (spec.labels is not None or spec.ordinal):
        field = "data.labels" if spec.labels is not None else "data.ordinal"
        raise UserError(f"{field} applies to a table; {path} is {fmt} data (use data.target for its ratings).")
    splits = READERS[fmt](path, spec)
    splits.source, splits.format = str(path), fmt
    for name, part in splits.parts().items():
        part.texts = clean_texts(part.texts, spec.clean)
        if name != "unsup":
            check_texts(part.texts, f"{path} ({name})")
    return splits
