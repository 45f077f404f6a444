"""Every dataset layout loads the same reviews; every bad input becomes a helpful UserError."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import one_line_user_error

from imdb_sentiment.config import CleaningConfig, DataConfig
from imdb_sentiment.data.cleaning import clean_text
from imdb_sentiment.data.dataset import UNLABELED, DatasetSplits, TextDataset
from imdb_sentiment.data.loaders import read_dataset, read_texts_table
from imdb_sentiment.data.splits import PreparedData, prepare_splits


def load(path: Path, **options: object) -> DatasetSplits:
    return read_dataset(path, DataConfig(**options))


def keys(dataset: TextDataset) -> set[tuple[int, str]]:
    """(label, id): unique within an aclImdb split (ids restart per pos/neg folder)."""
    return set(zip(dataset.labels.tolist(), dataset.ids, strict=True))


user_error = one_line_user_error


def expected_split(reviews: list, split: str) -> TextDataset:
    """The fixture reviews of one split as the loaders should return them (cleaned)."""
    rows = [r for r in reviews if r.split == split]
    return TextDataset(
        [clean_text(r.text, CleaningConfig()) for r in rows], [r.label for r in rows], [str(r.id) for r in rows]
    )


# --------------------------------------------------------------------------------------------------
# Layouts


def test_parquet_layout(tiny_imdb_parquet: Path, tiny_reviews: list) -> None:
    splits = load(tiny_imdb_parquet)
    assert splits.format == "imdb-parquet"
    assert {name: len(part) for name, part in splits.parts().items()} == {"train": 40, "test": 40, "unsup": 20}
    assert splits.train.label_counts() == splits.test.label_counts() == {"negative": 20, "positive": 20}
    assert (splits.unsup.labels == UNLABELED).all()
    for split in ("train", "test", "unsup"):
        assert getattr(splits, split).content_digest() == expected_split(tiny_reviews, split).content_digest()
    assert set(splits.files) == {str(tiny_imdb_parquet / f"{s}.parquet") for s in ("train", "test", "unsup")}


@pytest.mark.parametrize("use_parent", [False, True], ids=["aclImdb", "parent-of-aclImdb"])
def test_aclimdb_folder_matches_parquet(tiny_aclimdb: Path, tiny_imdb_parquet: Path, use_parent: bool) -> None:
    folder = load(tiny_aclimdb.parent if use_parent else tiny_aclimdb)
    assert folder.format == "aclimdb"
    assert folder.checksums().keys() >= {"train.content_sha256", "test.content_sha256", "unsup.content_sha256"}
    parquet = load(tiny_imdb_parquet)
    for split in ("train", "test", "unsup"):
        assert getattr(folder, split).content_digest() == getattr(parquet, split).content_digest()
    assert keys(folder.train) >= {(1, "0"), (0, "0")}  # train/pos/0_*.txt and train/neg/0_*.txt


@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "folder-holding-it"])
def test_archive_matches_folder(tiny_archive: Path, tiny_aclimdb: Path, as_folder: bool) -> None:
    archive = load(tiny_archive.parent if as_folder else tiny_archive)
    assert archive.format == "aclimdb-archive"
    folder = load(tiny_aclimdb)
    assert archive.checksums()["train.content_sha256"] == folder.checksums()["train.content_sha256"]
    assert archive.checksums()["test.content_sha256"] == folder.checksums()["test.content_sha256"]
    assert archive.unsup.content_digest() == folder.unsup.content_digest()
    assert list(archive.files) == [str(tiny_archive)]


def test_kaggle_layout(tiny_kaggle: Path, tiny_imdb_parquet: Path, tiny_reviews: list) -> None:
    splits = load(tiny_kaggle)
    assert splits.format == "kaggle"
    assert (len(splits.train), len(splits.test), len(splits.unsup)) == (40, 40, 20)
    # ids keep the rating and lose the quotes; test labels follow from that rating
    by_text = {clean_text(r.text, CleaningConfig()): r for r in tiny_reviews}
    for part in (splits.train, splits.test):
        for item_id, label, text in zip(part.ids, part.labels.tolist(), part.texts, strict=True):
            review = by_text[text]
            assert (item_id, label) == (review.kaggle_id, review.label)
    assert all(item_id.endswith("_0") for item_id in splits.unsup.ids)
    # backslash-escaped quotes come back as plain quotes
    assert any('"quoted words"' in text for text in splits.train.texts)
    assert not any("\\" in text for part in splits.parts().values() for text in part.texts)
    # the same reviews as the Parquet layout once ids drop their _RATING suffix
    parquet = load(tiny_imdb_parquet)
    for split in ("train", "test", "unsup"):
        part = getattr(splits, split)
        plain_ids = TextDataset(part.texts, part.labels, [i.rsplit("_", 1)[0] for i in part.ids])
        assert plain_ids.content_digest() == getattr(parquet, split).content_digest()


def test_kaggle_file_path_selects_layout(tiny_kaggle: Path) -> None:
    splits = load(tiny_kaggle / "labeledTrainData.tsv")
    assert splits.format == "kaggle" and len(splits.train) == 40


@pytest.mark.parametrize(
    ("row", "fragment"),
    [('"7_5"\t"A middling film."', "neutral rating"), ('"7"\t"A film."', "does not end in _RATING")],
)
def test_kaggle_test_ids_without_usable_rating(tmp_path: Path, row: str, fragment: str) -> None:
    (tmp_path / "testData.tsv").write_text(f'id\treview\n"1_9"\t"Great."\n{row}\n', encoding="utf-8")
    user_error(lambda: load(tmp_path), "testData.tsv", fragment)


def write_mr(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # Latin-1, as the original rt-polarity files: 0xe9 is "é" and is invalid UTF-8 on its own.
    (folder / "rt-polarity.pos").write_bytes(b"a caf\xe9 worth visiting .\n\nsimply great .\n")
    (folder / "rt-polarity.neg").write_bytes(b"na\xefve and dull .\nboring .\nawful , awful .\n")
    return folder


@pytest.mark.parametrize("point_at_file", [False, True])
def test_mr_latin1(tmp_path: Path, point_at_file: bool) -> None:
    folder = write_mr(tmp_path / "mr")
    splits = load(folder / "rt-polarity.neg" if point_at_file else folder)
    assert splits.format == "mr"
    assert splits.train is None  # out-of-domain evaluation only
    assert splits.test.texts == [
        "a café worth visiting .", "simply great .", "naïve and dull .", "boring .", "awful , awful .",
    ]  # fmt: skip
    assert splits.test.labels.tolist() == [1, 1, 0, 0, 0]
    assert len(set(splits.test.ids)) == 5


def test_mr_with_wrong_encoding_suggests_one(tmp_path: Path) -> None:
    folder = write_mr(tmp_path / "mr")
    user_error(lambda: load(folder, encoding="utf-8"), "rt-polarity.pos", "--encoding")


def _custom_frame(reviews: list) -> pd.DataFrame:
    rows = [r for r in reviews if r.label >= 0]
    return pd.DataFrame(
        {
            "review_id": [f"{r.split}-{r.folder}-{r.id}" for r in rows],
            "body": [r.text for r in rows],
            "sentiment": ["positive" if r.label else "negative" for r in rows],
        }
    )


TABLE_WRITERS: dict[str, Callable[[pd.DataFrame, Path], None]] = {
    "csv": lambda frame, path: frame.to_csv(path, index=False),
    "tsv": lambda frame, path: frame.to_csv(path, index=False, sep="\t"),
    "jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    "parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def test_tables_with_custom_columns_agree(tmp_path: Path, tiny_reviews: list) -> None:
    frame = _custom_frame(tiny_reviews)
    options = {"text_column": "body", "label_column": "sentiment", "id_column": "review_id"}
    digests = {}
    for kind, write in TABLE_WRITERS.items():
        path = tmp_path / f"reviews.{kind}"
        write(frame, path)
        splits = load(path, **options)
        assert splits.format == "table"
        assert len(splits.train) == 80 and splits.train.label_counts() == {"negative": 40, "positive": 40}
        assert splits.train.ids == frame["review_id"].tolist()
        assert splits.test is None  # carved later by prepare_splits
        digests[kind] = splits.train.content_digest()
    assert len(set(digests.values())) == 1, digests


def test_table_fixture_loads(tiny_table: Path) -> None:
    splits = load(tiny_table, id_column="id")
    assert len(splits.train) == 80 and splits.train.label_counts() == {"negative": 40, "positive": 40}


def test_separate_test_file_for_a_table(tmp_path: Path, tiny_reviews: list) -> None:
    frame = _custom_frame(tiny_reviews)
    train, test = tmp_path / "train.csv", tmp_path / "test.jsonl"
    TABLE_WRITERS["csv"](frame.iloc[:60], train)
    TABLE_WRITERS["jsonl"](frame.iloc[60:], test)
    splits = load(train, test_path=str(test), text_column="body", label_column="sentiment")
    assert (len(splits.train), len(splits.test)) == (60, 20)
    assert set(splits.files) == {str(train), str(test)}


@pytest.mark.parametrize(
    ("positive", "negative"),
    [("pos", "neg"), ("positive", "negative"), ("1", "0"), ("POS", "Negative"), (" pos ", "neg"), ("1.0", "0.0")],
)
def test_label_aliases(tmp_path: Path, positive: str, negative: str) -> None:
    path = tmp_path / "labels.csv"
    pd.DataFrame({"text": ["great film", "awful film", "wonderful", "boring"],
                  "label": [positive, negative, positive, negative]}).to_csv(path, index=False)  # fmt: skip
    assert load(path).train.labels.tolist() == [1, 0, 1, 0]


# --------------------------------------------------------------------------------------------------
# Cleaning


def test_cleaning_defaults() -> None:
    raw = "  Great<br /><br />film &amp; cast&#39;s <i>best</i>\n\n work.<BR>End  "
    assert clean_text(raw, CleaningConfig()) == "Great film & cast's best work. End"
    kept = clean_text(raw, CleaningConfig(html_breaks=False, html_tags=False, html_entities=False))
    assert "<br /><br />" in kept and "&amp;" in kept


def test_loaders_clean_by_default(tiny_imdb_parquet: Path) -> None:
    texts = [text for part in load(tiny_imdb_parquet).parts().values() for text in part.texts]
    assert not any("<br" in t or "&amp;" in t or "  " in t or t != t.strip() for t in texts)
    assert any(" & " in t for t in texts) and any("café" in t for t in texts)
    raw = load(tiny_imdb_parquet, clean={"html_breaks": False, "html_tags": False})
    assert any("<br /><br />" in t for t in raw.train.texts)


# --------------------------------------------------------------------------------------------------
# Splits


def prepared(path: Path, seed: int = 0, **options: object) -> PreparedData:
    spec = DataConfig(seed=seed, **options)
    return prepare_splits(read_dataset(path, spec), spec)


def test_official_splits_are_stratified_disjoint_and_keep_test_apart(tiny_imdb_parquet: Path) -> None:
    data = prepared(tiny_imdb_parquet)
    assert (len(data.train), len(data.valid), len(data.test)) == (36, 4, 40)
    assert data.valid.label_counts() == {"negative": 2, "positive": 2}
    assert data.train.label_counts() == {"negative": 18, "positive": 18}
    assert not keys(data.train) & keys(data.valid)
    assert keys(data.train) | keys(data.valid) == keys(data.raw.train)
    assert data.test is data.raw.test  # the official test split is used as is
    assert not (set(data.train.texts) | set(data.valid.texts)) & set(data.test.texts)
    assert data.unsup is data.raw.unsup


def test_splits_are_seeded(tiny_imdb_parquet: Path) -> None:
    first, again, other = (prepared(tiny_imdb_parquet, seed) for seed in (7, 7, 8))
    assert first.valid.ids == again.valid.ids and first.train.ids == again.train.ids
    assert keys(first.valid) != keys(other.valid)


def test_table_without_test_file_carves_a_disjoint_test(tiny_table: Path) -> None:
    data = prepared(tiny_table, id_column="id")
    parts = {name: set(getattr(data, name).ids) for name in ("train", "valid", "test")}
    assert (len(data.train), len(data.valid), len(data.test)) == (57, 7, 16)
    assert not parts["train"] & parts["test"] and not parts["valid"] & parts["test"]
    assert not parts["train"] & parts["valid"]
    assert parts["train"] | parts["valid"] | parts["test"] == set(data.raw.train.ids)
    assert data.test.label_counts() == {"negative": 8, "positive": 8}
    assert data.unsup is None
    # carving is seeded too, so the test set of a table is reproducible
    assert prepared(tiny_table, id_column="id").test.ids == data.test.ids


def test_limit_and_test_limit(tiny_imdb_parquet: Path) -> None:
    data = prepared(tiny_imdb_parquet, limit=20, test_limit=10, use_unsup=False)
    assert len(data.train) + len(data.valid) == 20 and len(data.test) == 10
    assert data.train.label_counts() == {"negative": 9, "positive": 9}
    assert data.test.label_counts() == {"negative": 5, "positive": 5}
    assert (keys(data.train) | keys(data.valid)) <= keys(data.raw.train)
    assert keys(data.test) <= keys(data.raw.test)  # the test subsample never draws from train
    assert data.unsup is None


@pytest.mark.parametrize("limit", [4, 10, 39])
def test_small_limits_do_not_crash(tiny_imdb_parquet: Path, limit: int) -> None:
    data = prepared(tiny_imdb_parquet, limit=limit)
    assert len(data.train) + len(data.valid) == limit and len(data.valid) >= 1


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("fmt", ["auto", "aclimdb", "table"])
def test_missing_path(tmp_path: Path, fmt: str) -> None:
    user_error(lambda: load(tmp_path / "nowhere", format=fmt), "nowhere", "does not exist", "--data")


def test_folder_without_known_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("hi")
    user_error(lambda: load(tmp_path), "No known dataset layout", "notes.md")


def test_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "reviews.xlsx"
    path.write_bytes(b"PK\x03\x04")
    user_error(lambda: load(path), "Cannot tell the format", "reviews.xlsx")


def test_corrupt_archive(tmp_path: Path) -> None:
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_bytes(b"this is not a gzip file at all" * 50)
    user_error(lambda: load(path), "corrupt or truncated", "download")


def test_truncated_archive(tiny_archive: Path) -> None:
    data = tiny_archive.read_bytes()
    tiny_archive.write_bytes(data[: len(data) // 2])
    user_error(lambda: load(tiny_archive), str(tiny_archive), "corrupt or truncated")


def test_truncated_plain_tar(tiny_archive: Path) -> None:
    tar = gzip.decompress(tiny_archive.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        middle = archive.getmembers()[len(archive.getmembers()) // 2]
    cut = tiny_archive.with_name("aclImdb_v1.tar")
    cut.write_bytes(tar[: middle.offset + 100])  # ends inside a member's header
    user_error(lambda: load(cut), "corrupt or truncated")


def test_truncated_download_at_any_point_is_caught(tiny_archive: Path) -> None:
    data = tiny_archive.read_bytes()
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        tiny_archive.write_bytes(data[: int(len(data) * fraction)])
        user_error(lambda: load(tiny_archive), "corrupt or truncated")


def test_archive_without_reviews(tmp_path: Path) -> None:
    (tmp_path / "aclImdb").mkdir()
    (tmp_path / "aclImdb" / "README").write_text("empty")
    with tarfile.open(tmp_path / "aclImdb_v1.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "aclImdb", arcname="aclImdb")
    user_error(lambda: load(tmp_path / "aclImdb_v1.tar.gz"), "no train/pos")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_bad_parquet(tiny_imdb_parquet: Path, damage: str) -> None:
    file = tiny_imdb_parquet / "train.parquet"
    data = file.read_bytes()
    file.write_bytes(b"\x00garbage" * 64 if damage == "garbage" else data[: len(data) // 2])
    user_error(lambda: load(tiny_imdb_parquet), "train.parquet", "not a readable Parquet file")


def test_bad_parquet_table_file(tmp_path: Path) -> None:
    path = tmp_path / "reviews.parquet"
    path.write_bytes(b"PAR1 but not really")
    user_error(lambda: load(path), "reviews.parquet", "Parquet")


def test_parquet_layout_missing_column(tiny_imdb_parquet: Path) -> None:
    file = tiny_imdb_parquet / "train.parquet"
    pd.read_parquet(file).rename(columns={"text": "review"}).to_parquet(file)
    user_error(lambda: load(tiny_imdb_parquet), "missing column(s) text", "found: id, rating, label, review")


def test_parquet_layout_labels_outside_set(tiny_imdb_parquet: Path) -> None:
    file = tiny_imdb_parquet / "test.parquet"
    frame = pd.read_parquet(file)
    frame.loc[3, "label"] = 2
    frame.to_parquet(file)
    user_error(lambda: load(tiny_imdb_parquet), "test.parquet", "label", "2")


def test_parquet_layout_with_string_labels(tiny_imdb_parquet: Path) -> None:
    file = tiny_imdb_parquet / "train.parquet"
    frame = pd.read_parquet(file)
    frame["label"] = np.where(frame["label"] == 1, "pos", "neg")
    frame.to_parquet(file)
    assert load(tiny_imdb_parquet).train.label_counts() == {"negative": 20, "positive": 20}


def test_table_missing_columns_names_those_found(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good"], "stars": [5]}).to_csv(path, index=False)
    user_error(lambda: load(path), "missing column(s) text, label", "found: review, stars", "--text-column")


def test_table_missing_id_column(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}).to_csv(path, index=False)
    user_error(lambda: load(path, id_column="review_id"), "missing column(s) review_id", "found: text, label")


def test_labels_beside_sentiment_spellings_are_classes_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d", "e"], "label": ["pos", "meh", "neg", "2", "meh"]}).to_csv(
        path, index=False
    )
    train = load(path).train
    assert train.classes.names == ("2", "meh", "neg", "pos")  # not sentiment: every distinct cell a class
    assert train.labels.tolist() == [3, 1, 2, 0, 1]


def test_kaggle_bad_sentiment(tiny_kaggle: Path) -> None:
    file = tiny_kaggle / "labeledTrainData.tsv"
    lines = file.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("\t1\t", "\tyes\t").replace("\t0\t", "\tyes\t")
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    user_error(lambda: load(tiny_kaggle), "labeledTrainData.tsv", "'yes'", "sentiment")


@pytest.mark.parametrize("bad_text", ["", "   ", "<br /><br />"])
def test_empty_texts(tmp_path: Path, bad_text: str) -> None:
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["good film", bad_text, "bad film"], "label": [1, 0, 0]}).to_csv(path, index=False)
    user_error(lambda: load(path), "empty or whitespace-only", "row 2")


def test_empty_text_in_parquet_layout(tiny_imdb_parquet: Path) -> None:
    file = tiny_imdb_parquet / "train.parquet"
    frame = pd.read_parquet(file)
    frame.loc[5, "text"] = " \n "
    frame.to_parquet(file)
    user_error(lambda: load(tiny_imdb_parquet), "(train)", "empty or whitespace-only", "row 6")


def test_null_text_in_parquet_layout(tiny_imdb_parquet: Path) -> None:
    file = tiny_imdb_parquet / "train.parquet"
    frame = pd.read_parquet(file)
    frame["text"] = frame["text"].astype(object)
    frame.loc[2, "text"] = None
    frame.to_parquet(file)
    user_error(lambda: load(tiny_imdb_parquet), "(train)", "empty or whitespace-only", "row 3")


def test_undecodable_table_suggests_encoding(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ngreat caf\xe9,1\nawful,0\n")
    user_error(lambda: load(path), "reviews.csv", "0xe9", "--encoding latin-1")
    assert load(path, encoding="latin-1").train.texts == ["great café", "awful"]


def test_undecodable_review_file_is_named(tiny_aclimdb: Path) -> None:
    bad = tiny_aclimdb / "test" / "neg" / "999_1.txt"
    bad.write_bytes(b"awful \xff\xfe film")
    user_error(lambda: load(tiny_aclimdb), "test/neg/999_1.txt", "--encoding")


def test_unknown_encoding(tiny_table: Path) -> None:
    user_error(lambda: load(tiny_table, encoding="klingon-8"), "Unknown encoding", "klingon-8")


def test_malformed_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "good", "label": 1}\n{"text": "bad", \n', encoding="utf-8")
    user_error(lambda: load(path), "reviews.jsonl", "not a valid JSONL file")


def test_mr_lines_split_on_newlines_only(tmp_path) -> None:
    # Latin-1 byte 0x85 decodes to U+0085 (NEL), which str.splitlines() would treat as a line break.
    from imdb_sentiment.config import DataConfig
    from imdb_sentiment.data.loaders import read_dataset

    (tmp_path / "rt-polarity.pos").write_bytes(b"a fine film \x85 truly\nwarm and witty\n")
    (tmp_path / "rt-polarity.neg").write_bytes(b"dull\n")
    splits = read_dataset(tmp_path, DataConfig())
    assert splits.test is not None and len(splits.test) == 3


# --------------------------------------------------------------------------------------------------
# UTF-16 / UTF-32 files: never suggest Latin-1 for them


def reencode(source: Path, target: Path, encoding: str) -> Path:
    target.write_bytes(source.read_text(encoding="utf-8").encode(encoding))
    return target


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_table_with_utf16_or_utf32_byte_order_mark_is_decoded(tiny_table: Path, encoding: str) -> None:
    wide = reencode(tiny_table, tiny_table.with_name("wide.csv"), encoding)
    assert wide.read_bytes()[:2] == b"\xff\xfe"  # the byte-order mark Excel's "Unicode text" writes
    assert load(wide).train.content_digest() == load(tiny_table).train.content_digest()


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_table_in_utf16_without_mark_suggests_its_encoding(tiny_table: Path, encoding: str) -> None:
    wide = reencode(tiny_table, tiny_table.with_name("wide.csv"), encoding)
    message = user_error(lambda: load(wide), "wide.csv", f"--encoding {encoding}.", "NUL bytes")
    assert "latin-1" not in message
    assert load(wide, encoding=encoding).train.content_digest() == load(tiny_table).train.content_digest()


def test_utf16_file_read_as_latin1_is_refused_not_garbled(tiny_table: Path) -> None:
    # Latin-1 decodes any bytes, so without the check this would "work" and return NUL-riddled text.
    wide = reencode(tiny_table, tiny_table.with_name("wide.csv"), "utf-16")
    message = user_error(
        lambda: load(wide, encoding="latin-1"), "wide.csv", "--encoding utf-16.", "byte-order mark"
    )
    assert "--encoding latin-1" not in message


def test_mr_files_in_utf16_suggest_utf16(tmp_path: Path) -> None:
    (tmp_path / "rt-polarity.pos").write_bytes("a fine film\nwarm and witty\n".encode("utf-16-le"))
    (tmp_path / "rt-polarity.neg").write_bytes("dull\n".encode("utf-16-le"))
    message = user_error(lambda: load(tmp_path), "rt-polarity.pos", "--encoding utf-16-le", "not latin-1")
    assert "--encoding latin-1" not in message
    assert load(tmp_path, encoding="utf-16-le").test.texts == ["a fine film", "warm and witty", "dull"]


def test_corrupt_utf16_after_its_mark_is_named(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes("text,label\ngreat,1\n".encode("utf-16") + b"\x00\xd8")  # a lone surrogate half
    message = user_error(lambda: load(path), "reviews.csv", "UTF-16 byte-order mark", "damaged")
    assert "latin-1" not in message


def test_utf8_byte_order_mark_does_not_rename_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes("text,label\ngreat,1\nawful,0\n".encode("utf-8-sig"))
    assert load(path).train.texts == ["great", "awful"]


def test_prediction_text_file_in_utf16(tmp_path: Path) -> None:
    from imdb_sentiment.data.loaders import read_texts_table

    path = tmp_path / "reviews.txt"
    path.write_bytes("A wonderful film.\r\nTwo hours I will never get back.\r\n".encode("utf-16"))
    texts, ids = read_texts_table(path, None, "utf-8")
    assert texts == ["A wonderful film.", "Two hours I will never get back."] and ids == ["0", "1"]
    path.write_bytes("A wonderful film.\n".encode("utf-16-le"))
    message = user_error(lambda: read_texts_table(path, None, "utf-8"), "reviews.txt", "--encoding utf-16-le")
    assert "latin-1" not in message


def test_cli_reports_utf16_table_in_one_line(tiny_table: Path) -> None:
    """The real console script: exit code 2, one line naming the encoding, no traceback."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "imdb-sentiment"
    wide = reencode(tiny_table, tiny_table.with_name("wide.csv"), "utf-16-le")
    result = subprocess.run(
        [str(script), "data", "stats", "--data", str(wide)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--encoding utf-16-le" in result.stderr and "latin-1" not in result.stderr
    reencode(tiny_table, wide, "utf-16")  # with a byte-order mark it simply works
    result = subprocess.run(
        [str(script), "data", "stats", "--data", str(wide)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_rows_with_more_fields_than_the_header_are_refused_not_shifted(tmp_path: Path) -> None:
    """Before: pandas took each row's first field as the index, so 'Great, truly great' was read as the
    text ' truly great' and a one-column file's texts were called empty."""
    path = tmp_path / "reviews.csv"
    path.write_text("text\nA masterpiece, the best film.\nDull, I walked out.\n", encoding="utf-8")
    user_error(lambda: read_texts_table(path, None, "utf-8"), "more fields than its header", "quoted")
    path.write_text('text\n"A masterpiece, the best film."\n', encoding="utf-8")
    assert read_texts_table(path, None, "utf-8")[0] == ["A masterpiece, the best film."]
