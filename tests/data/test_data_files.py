"""Data files a user may hand over by mistake, through the real CLI (``data stats``, ``train``,
``evaluate --data``, ``predict --file`` share the readers): binary files under a text name, NUL bytes,
unreadable files, JSON arrays, non-string text cells, repeated reviews, limits above the data size and
evaluating on data without a test split."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import one_line_user_error, run_cli, write_tiny_parquet_imdb

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data.dataset import DatasetSplits, TextDataset
from imdb_sentiment.data.loaders import read_dataset
from imdb_sentiment.data.splits import evaluation_split, prepare_splits

TABLE = "text,label\n" + "a great and wonderful film,1\nan awful and boring film,0\n" * 5


def unwrapped(err: str) -> str:
    """Log lines as one string: the log handler wraps long messages over indented lines."""
    return " ".join(err.split())


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """An nbsvm run trained on a train-only Parquet folder: its test split is carved from train."""

    class _Quiet:
        def readouterr(self):
            class Captured:
                out = err = ""

            return Captured()

    root = tmp_path_factory.mktemp("data-files")
    write_tiny_parquet_imdb(root / "train-only", size=80)
    for split in ("test", "unsup"):
        (root / "train-only" / f"{split}.parquet").unlink()
    args = ["train", "nbsvm", "--data", str(root / "train-only"), "--output-dir", str(root / "runs"), "--quiet",
            "--set", "model.params.min_df=1", "--set", "model.params.max_features=null"]  # fmt: skip
    code, _, err = run_cli(args, _Quiet())
    assert code == 0, err
    (run_dir,) = list((root / "runs").iterdir())
    return root, run_dir


# --------------------------------------------------------------------------------------------------
# What a file is: magic numbers, NUL bytes, permissions


def _zip(raw: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("reviews.csv", raw)
    return buffer.getvalue()


def _parquet(raw: bytes) -> bytes:
    buffer = io.BytesIO()
    pd.read_csv(io.BytesIO(raw)).to_parquet(buffer)
    return buffer.getvalue()


BINARY_FILES = {
    "gzip": (gzip.compress, "is a gzip-compressed file", "gunzip"),
    "bzip2": (bz2.compress, "is a bzip2-compressed file", "bunzip2"),
    "xz": (lzma.compress, "is an xz-compressed file", "unxz"),
    "zip": (_zip, "is a zip archive", "export the sheet as CSV"),
    "parquet": (_parquet, "is a Parquet file", ".parquet"),
    "pdf": (lambda raw: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + raw, "is a PDF document", "CSV"),
}


@pytest.mark.parametrize("kind", list(BINARY_FILES))
def test_binary_file_under_a_text_name_says_what_it_is(tmp_path: Path, kind: str) -> None:
    pack, what, advice = BINARY_FILES[kind]
    path = tmp_path / "reviews.csv"
    path.write_bytes(pack(TABLE.encode()))
    message = one_line_user_error(lambda: read_dataset(path, DataConfig()), str(path), what, advice)
    assert "byte-order mark" not in message and "UTF-16" not in message


@pytest.mark.parametrize("command", ["data stats", "train", "evaluate", "predict"])
def test_every_command_reads_through_the_same_sniffing(tiny_run, capsys, command: str) -> None:
    root, run_dir = tiny_run
    gzipped = root / f"gzipped-{command.replace(' ', '-')}.csv"
    gzipped.write_bytes(gzip.compress(TABLE.encode()))
    args = {
        "data stats": ["data", "stats", "--data", str(gzipped)],
        "train": ["train", "nbsvm", "--data", str(gzipped), "--output-dir", str(root / "never"), "--quiet"],
        "evaluate": ["evaluate", str(run_dir), "--data", str(gzipped)],
        "predict": ["predict", str(run_dir), "--file", str(gzipped)],
    }[command]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, f"{gzipped} is a gzip-compressed file", "gunzip")
    assert not (root / "never").exists()


def test_utf8_text_with_nul_bytes_is_named_as_such(tmp_path: Path, capsys) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(TABLE.encode().replace(b"great", b"gr\0eat"))
    code, _, err = run_cli(["data", "stats", "--data", str(path)], capsys)
    line = assert_one_line_error(code, err, "utf-8 text with 5 NUL byte(s)", "offset 15", "tr -d")
    assert "byte-order mark" not in line and "--encoding utf-16" not in line


def test_binary_noise_with_nul_bytes_is_not_called_utf16(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    message = one_line_user_error(lambda: read_dataset(path, DataConfig()), "not utf-8 text", "binary file")
    assert "byte-order mark" not in message and "--encoding" not in message


def test_parquet_name_on_a_csv_says_it_is_text(tmp_path: Path) -> None:
    path = tmp_path / "reviews.parquet"
    path.write_text(TABLE)
    one_line_user_error(lambda: read_dataset(path, DataConfig()), "not a readable Parquet file", "it is text")


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.parquet", "rt-polarity.pos"])
def test_unreadable_file_is_one_line(tmp_path: Path, capsys, monkeypatch, name: str) -> None:
    """A mode-000 file (simulated: the tests may run as root, who reads anything)."""
    path = tmp_path / name
    path.write_text(TABLE)
    (tmp_path / "rt-polarity.neg").write_text("dull\n")

    def denied(self, *args, **kwargs):
        if Path(self).name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    real_open = Path.open
    monkeypatch.setattr(Path, "open", denied)  # Path.read_bytes and read_text open through it
    code, _, err = run_cli(["data", "stats", "--data", str(path)], capsys)
    assert_one_line_error(code, err, f"Cannot read {path}: permission denied", "chmod u+r")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads a mode-000 file")
def test_mode_000_csv_through_the_console_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "reviews.csv"
    path.write_text(TABLE)
    path.chmod(0)
    script = Path(sys.executable).with_name("imdb-sentiment")
    result = subprocess.run([str(script), "data", "stats", "--data", str(path)], capture_output=True, text=True)
    assert_one_line_error(result.returncode, result.stderr, "permission denied")


def test_a_file_that_fails_to_read_is_one_line(tmp_path: Path, capsys) -> None:
    """Any OSError while reading (here EIO: /proc/self/mem cannot be read at offset 0, even by root)."""
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs /proc")
    path = tmp_path / "reviews.csv"
    path.symlink_to("/proc/self/mem")
    code, _, err = run_cli(["data", "stats", "--data", str(path)], capsys)
    assert_one_line_error(code, err, f"Cannot read {path}: Input/output error")


# --------------------------------------------------------------------------------------------------
# JSON arrays, non-object lines, many columns


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_array_says_json_lines_is_expected(tiny_run, capsys, suffix: str) -> None:
    root, run_dir = tiny_run
    path = root / f"array{suffix}"
    path.write_text(json.dumps([{"text": f"review {i}", "label": i % 2} for i in range(200)]))
    for args in (["data", "stats", "--data", str(path)], ["predict", str(run_dir), "--file", str(path)]):
        code, _, err = run_cli(args, capsys)
        line = assert_one_line_error(code, err, "is a JSON array; JSON Lines is expected: one object per line")
        assert len(line) < 300 and "199" not in line


def test_json_lines_that_are_not_objects(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text('"a great film"\n"an awful film"\n')
    one_line_user_error(lambda: read_dataset(path, DataConfig()), "lines are not JSON objects")


def test_missing_columns_list_only_a_handful(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    pd.DataFrame({f"column_{i}_" + "x" * 100: [1] for i in range(200)}).to_csv(path, index=False)
    message = one_line_user_error(
        lambda: read_dataset(path, DataConfig()), "missing column(s) text", "(200 columns)"
    )
    assert len(message) < 600


# --------------------------------------------------------------------------------------------------
# Text cells that are not strings


@pytest.mark.parametrize(
    ("cell", "kind"),
    [('{"title": "Up", "body": "great"}', "an object"), ('["great", "film"]', "a list"), ("7", "a number"),
     ("true", "a boolean")],
)  # fmt: skip
def test_json_lines_with_a_non_string_text_is_refused(tiny_run, capsys, cell: str, kind: str) -> None:
    root, run_dir = tiny_run
    path = root / "nested.jsonl"
    lines = ['{"text": "a great film", "label": 1}', '{"text": "an awful film", "label": 0}'] * 3
    path.write_text("\n".join([*lines, f'{{"text": {cell}, "label": 1}}']) + "\n")
    for args in (["data", "stats", "--data", str(path)],
                 ["train", "nbsvm", "--data", str(path), "--output-dir", str(root / "never"), "--quiet"],
                 ["evaluate", str(run_dir), "--data", str(path)],
                 ["predict", str(run_dir), "--file", str(path)]):  # fmt: skip
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, "column 'text' holds 1 value(s) that are not text", "row 7", kind)
    assert not (root / "never").exists()


def test_parquet_with_numbers_or_lists_as_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"text": [3, 4, 5, 6], "label": [1, 0, 1, 0]}).to_parquet(path)
    one_line_user_error(lambda: read_dataset(path, DataConfig()), "not text", "row 1", "a number")
    pd.DataFrame({"text": [["a", "b"], ["c"], ["d"], ["e"]], "label": [1, 0, 1, 0]}).to_parquet(path)
    one_line_user_error(lambda: read_dataset(path, DataConfig()), "4 value(s) that are not text", "a list")


def test_null_text_is_still_an_empty_text(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "a great film", "label": 1}\n{"text": null, "label": 0}\n')
    one_line_user_error(lambda: read_dataset(path, DataConfig()), "empty or whitespace-only", "row 2")


# --------------------------------------------------------------------------------------------------
# Repeated reviews


def random_label_reviews(size: int, seed: int = 0) -> pd.DataFrame:
    """Reviews of random words with random labels: nothing to learn, so held-out accuracy is chance
    unless the held-out reviews were also trained on."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"word{i}" for i in range(500)]
    texts = [" ".join(rng.choice(vocabulary, 12)) for _ in range(size)]
    return pd.DataFrame({"text": texts, "label": rng.permutation(np.arange(size) % 2)})


def test_repeated_reviews_never_leak_into_the_automatic_test_split(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tripled.csv"
    pd.concat([random_label_reviews(200)] * 3).to_csv(path, index=False)
    args = ["train", "nbsvm", "--data", str(path), "--output-dir", str(tmp_path / "runs"),
            "--set", "model.params.min_df=1", "--set", "model.params.max_features=null"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert unwrapped(err).count("400 repeated review(s) (200 text(s) appear more than once)") == 1, err
    (run_dir,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Held-out copies of trained-on reviews scored 1.0 here; random labels held out score chance.
    assert metrics["examples"] == 120 and metrics["accuracy"] < 0.8, metrics["accuracy"]
    recorded = json.loads((run_dir / "data.json").read_text())["duplicates"]["train"]
    assert recorded == {"repeated_rows": 400, "repeated_texts": 200, "conflicting_texts": 0, "dropped_rows": 0}


def with_repeats(size: int = 300) -> TextDataset:
    """``size`` distinct reviews (30% positive), the first 60 of them three times, rows shuffled."""
    labels = (np.arange(size) < int(0.3 * size)).astype(int)
    texts = [f"review number {i}" for i in range(size)]
    rows = np.random.default_rng(1).permutation(list(range(size)) + list(range(0, size, 5)) * 2)
    return TextDataset([texts[i] for i in rows], labels[rows], [f"row{j}" for j in range(len(rows))])


def test_validation_and_test_splits_keep_every_copy_on_one_side() -> None:
    data = with_repeats()
    prepared = prepare_splits(DatasetSplits(train=data, test=None), DataConfig(seed=3))
    sides = [{text.casefold() for text in part.texts} for part in (prepared.train, prepared.valid, prepared.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sum(len(part) for part in (prepared.train, prepared.valid, prepared.test)) == len(data)
    assert len(sides[2]) == 60  # 20% of the 300 distinct reviews
    for part in (prepared.train, prepared.valid, prepared.test):  # stratified by review
        shares = [label for text, label in dict(zip(part.texts, part.labels.tolist(), strict=True)).items()]
        assert abs(np.mean(shares) - 0.3) < 0.05
    assert prepared.summary()["duplicates"]["train"]["repeated_rows"] == 120


def test_copies_that_differ_in_case_or_spacing_are_one_review() -> None:
    texts = ["A great film", "a  great film ", "A GREAT FILM"] + [f"other {i}" for i in range(20)]
    data = TextDataset(texts, [1, 1, 1] + [i % 2 for i in range(20)])
    prepared = prepare_splits(DatasetSplits(train=data, test=None), DataConfig(seed=0))
    holding = [part for part in (prepared.train, prepared.valid, prepared.test) if "A great film" in part.texts]
    assert len(holding) == 1 and set(texts[:3]) <= set(holding[0].texts)


def test_conflicting_labels_are_dropped_counted_and_warned(caplog) -> None:
    texts = ["loved it", "loved it", "Loved it", "fine"] + [f"review {i}" for i in range(40)]
    labels = [1, 1, 0, 1] + [i % 2 for i in range(40)]
    test = TextDataset(["review 3", "new one", "new one"], [1, 0, 1])
    with caplog.at_level("WARNING", logger="imdb_sentiment"):
        prepared = prepare_splits(DatasetSplits(train=TextDataset(texts, labels), test=test), DataConfig(seed=0))
    everything = [*prepared.train.texts, *prepared.valid.texts]
    assert "loved it" not in everything and "Loved it" not in everything and "fine" in everything
    assert prepared.test.texts == ["review 3"]
    duplicates = prepared.summary()["duplicates"]
    assert duplicates["train"] == {
        "repeated_rows": 2,
        "repeated_texts": 1,
        "conflicting_texts": 1,
        "dropped_rows": 3,
    }
    assert duplicates["test"]["dropped_rows"] == 2 and duplicates["test_rows_in_train"] == 1
    messages = [record.getMessage() for record in caplog.records]
    assert any("1 text(s) carry both labels; dropped all 3 of their rows" in m for m in messages), messages
    assert any("test: 1 review(s) also appear in train" in m for m in messages), messages


# --------------------------------------------------------------------------------------------------
# --limit / --test-limit above the data size


def test_limits_above_the_data_record_what_was_used(tmp_path: Path, capsys) -> None:
    write_tiny_parquet_imdb(tmp_path / "imdb", size=40)
    args = ["train", "nbsvm", "--data", str(tmp_path / "imdb"), "--output-dir", str(tmp_path / "runs"),
            "--limit", "5000", "--test-limit", "30000",
            "--set", "model.params.min_df=1", "--set", "model.params.max_features=null"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert unwrapped(err).count("data.test_limit 30,000 is above the 40 test reviews: all 40 used") == 1, err
    assert unwrapped(err).count("data.limit 5,000 is above the 40 training reviews: all 40 used") == 1, err
    (run_dir,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["full_test_set"] is True and metrics["examples"] == 40
    data = json.loads((run_dir / "data.json").read_text())
    assert data["limits"] == {"limit": {"asked": 5000, "used": 40, "available": 40},
                              "test_limit": {"asked": 30000, "used": 40, "available": 40}}  # fmt: skip
    assert data["full_test_set"] is True


def test_a_test_limit_below_the_test_size_is_not_the_full_test_set(tmp_path: Path) -> None:
    data = TextDataset([f"review {i}" for i in range(40)], np.arange(40) % 2)
    prepared = prepare_splits(
        DatasetSplits(train=data, test=data.subset(np.arange(20))), DataConfig(test_limit=10)
    )
    assert len(prepared.test) == 10 and not prepared.full_test_set
    assert prepared.summary()["limits"] == {"test_limit": {"asked": 10, "used": 10, "available": 20}}


# --------------------------------------------------------------------------------------------------
# evaluate --data on data without a test split


def test_evaluate_on_the_runs_own_training_folder_scores_its_held_out_split(tiny_run, capsys) -> None:
    root, run_dir = tiny_run
    code, _, err = run_cli(["evaluate", str(run_dir), "--data", str(root / "train-only")], capsys)
    assert code == 0, err
    assert err.startswith("note: ") and "no test split and is this run's training data" in err
    trained = json.loads((run_dir / "metrics.json").read_text())
    (saved,) = list((run_dir / "evaluations").glob("train-only-*.json"))
    evaluated = json.loads(saved.read_text())
    assert evaluated["split"] == "held-out" and evaluated["examples"] == trained["examples"] == 16
    assert evaluated["accuracy"] == trained["accuracy"]


def test_evaluate_on_another_folder_without_a_test_split_is_refused(tiny_run, capsys) -> None:
    root, run_dir = tiny_run
    write_tiny_parquet_imdb(root / "other", size=40, seed=7)
    (root / "other" / "test.parquet").unlink()
    code, _, err = run_cli(["evaluate", str(run_dir), "--data", str(root / "other")], capsys)
    assert_one_line_error(code, err, "has training reviews only (no test split)", "leave --data out")


def test_evaluate_on_a_labelled_table_scores_all_of_it(tiny_run, capsys) -> None:
    root, run_dir = tiny_run
    path = root / "labelled.csv"
    pd.DataFrame({"text": ["great wonderful film", "awful boring film"] * 3, "label": [1, 0] * 3}).to_csv(path)
    code, _, err = run_cli(["evaluate", str(run_dir), "--data", str(path)], capsys)
    assert code == 0 and "note:" not in err, err
    (saved,) = list((run_dir / "evaluations").glob("labelled.csv-*.json"))
    assert json.loads(saved.read_text())["split"] == "all" and json.loads(saved.read_text())["examples"] == 6


def test_evaluate_refuses_the_training_data_of_a_run_with_a_separate_test(tmp_path: Path) -> None:
    train = TextDataset([f"review {i}" for i in range(40)], np.arange(40) % 2)
    splits = DatasetSplits(train=train, test=None, source="train-only", format="imdb-parquet")
    data_json = tmp_path / "data.json"
    checksums = {"train.content_sha256": train.content_digest(), "test.content_sha256": "0" * 64}
    data_json.write_text(json.dumps({"checksums": checksums}))
    one_line_user_error(
        lambda: evaluation_split(splits, DataConfig(), data_json), "is the data this run trained on"
    )
    del checksums["test.content_sha256"]
    data_json.write_text(json.dumps({"checksums": checksums}))
    held_out, split, note = evaluation_split(splits, DataConfig(seed=4), data_json)
    assert split == "held-out" and note and len(held_out) == 8
    assert held_out.ids == prepare_splits(splits, DataConfig(seed=4)).test.ids
    table = DatasetSplits(train=train, test=None, source="t.csv", format="table")
    assert evaluation_split(table, DataConfig(), tmp_path / "missing.json")[1] == "all"


def test_unreadable_archive_is_not_called_corrupt(tiny_archive: Path, monkeypatch) -> None:
    import tarfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tiny_archive))

    monkeypatch.setattr(tarfile, "open", denied)
    message = one_line_user_error(lambda: read_dataset(tiny_archive, DataConfig()), "permission denied")
    assert "corrupt" not in message
