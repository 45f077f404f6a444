"""Files and cells: reading a file's bytes or a table (CSV / TSV / JSON Lines / Parquet) and turning
its columns into texts and labels, each problem a one-line :class:`UserError` that says what the file
is and what to do. The layouts in :mod:`imdb_sentiment.data.loaders` read through these."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from imdb_sentiment.data.encoding import decode, describe_binary
from imdb_sentiment.data.labels import clip
from imdb_sentiment.errors import UserError

JSON_KINDS = {dict: "an object", list: "a list", tuple: "a list", np.ndarray: "a list", bool: "a boolean",
              np.bool_: "a boolean", bytes: "bytes"}  # fmt: skip


def text_cells(values: Iterable[object], where: Path | str, column: str) -> list[str]:
    """The cells of a text column as strings. Missing cells (null, NaN) become "" for the empty-text
    checks; any other non-string (a nested object, list, number, boolean, bytes) is refused: its
    ``str()`` is a Python repr, not a review, and training on it would be silent nonsense."""
    texts, bad, first = [], 0, None
    for row, value in enumerate(values):
        if isinstance(value, str):
            texts.append(value)
            continue
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            texts.append("")
            continue
        bad += 1
        first = first or (row, value)
    if first is not None:
        row, value = first
        kind = next((name for cls, name in JSON_KINDS.items() if isinstance(value, cls)), None)
        kind = kind or ("a number" if isinstance(value, int | float | np.number) else type(value).__name__)
        raise UserError(
            f"{where}: column {column!r} holds {bad:,} value(s) that are not text, first at row {row + 1}: "
            f"{kind} ({clip(repr(value))}). Texts must be strings: fix those rows or choose another "
            "--text-column."
        )
    return texts


def read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise UserError(f"File {path} does not exist.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(unreadable_message(path, exc)) from None


def unreadable_message(path: Path, exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return f"Cannot read {path}: permission denied. Make it readable (chmod u+r {path}) or use a copy you can read."
    return f"Cannot read {path}: {exc.strerror or type(exc).__name__}. Check the file and the disk it is on."


def read_table_file(path: Path, kind: str, encoding: str) -> pd.DataFrame:
    if kind == "parquet":
        return read_parquet(path)
    import io

    text = decode(read_bytes(path), encoding, str(path))
    try:
        if kind == "jsonl":
            return read_json_lines(text, path)
        separator = "\t" if kind == "tsv" else ","
        # Kaggle's TSVs quote fields with '"' and escape inner quotes with a backslash.
        frame = pd.read_csv(io.StringIO(text), sep=separator, escapechar="\\", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{path} is not a valid {kind.upper()} file: {str(exc).splitlines()[0]}") from None
    if not isinstance(frame.index, pd.RangeIndex):
        # Every row has more fields than the header: pandas would silently take the first field as the index
        # and the rest as the columns (a review "Great, truly great" became an "empty text" and "truly great").
        raise UserError(
            f"{path}: its rows have more fields than its header ({len(frame.columns)} column(s)): a text holding "
            f'the separator ({separator!r}) must be quoted ("..."). Quote those fields, or save the file as TSV.'
        )
    return frame


def read_json_lines(text: str, path: Path) -> pd.DataFrame:
    import io

    if text.lstrip().startswith("["):
        raise UserError(
            f"{path} is a JSON array; JSON Lines is expected: one object per line, e.g. "
            f'{{"text": "...", "label": "pos"}}. Convert it (jq -c \'.[]\' FILE > FILE.jsonl) and try again.'
        )
    frame = pd.read_json(io.StringIO(text), lines=True, dtype=False)
    if len(frame.columns) and all(isinstance(column, int) for column in frame.columns):
        raise UserError(
            f"{path}: its lines are not JSON objects; JSON Lines is expected: one object per line, e.g. "
            '{"text": "...", "label": "pos"}.'
        )
    return frame


def read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise UserError(unreadable_message(path, exc)) from None
    if not head.startswith(b"PAR1"):
        binary = describe_binary(head)
        what = binary[0] if binary else "text (a CSV or JSON file?)" if head.isascii() else "something else"
        raise UserError(
            f"{path} is not a readable Parquet file: it is {what}. Point at the Parquet file, or name the "
            "file for what it is (.csv, .tsv, .jsonl)."
        )
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise UserError(
            f"{path} is not a readable Parquet file (corrupt or truncated: {str(exc).splitlines()[0][:120]}). "
            "Replace it with a good copy."
        ) from None


def require_columns(frame: pd.DataFrame, columns: list[str], where: Path | str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        names = [clip(str(column)) for column in frame.columns]
        found = ", ".join(names[:8]) + (f", ... ({len(names):,} columns)" if len(names) > 8 else "") or "none"
        raise UserError(
            f"{where}: missing column(s) {', '.join(missing)}; found: {found}. "
            "Name the right ones with --text-column / --label-column."
        )
