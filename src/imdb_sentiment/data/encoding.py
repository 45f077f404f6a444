"""Bytes to text: the requested codec, with the mistakes users actually make caught and named (a
UTF-16 / UTF-32 file, a UTF-8 byte-order mark, Latin-1 text read as UTF-8, NUL bytes, and a binary
file such as a gzip archive or a Parquet file under a text file's name)."""

from __future__ import annotations

import codecs
import re

from imdb_sentiment.errors import UserError

# (magic bytes at offset 0, what the file is, what to do). Checked before any decoding: these bytes
# would otherwise read as "UTF-16 text" (they hold NUL bytes) or as Latin-1 garbage.
MAGIC_NUMBERS: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "a gzip-compressed file", "Decompress it first (gunzip -k FILE)"),
    (b"PK\x03\x04", "a zip archive (or an .xlsx / .docx / .ods file, which are zip archives)",
     "Unzip it, or export the sheet as CSV (UTF-8)"),
    (b"PK\x05\x06", "an empty zip archive", "Export the data as CSV (UTF-8)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file", "Decompress it first (unxz -k FILE)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "Decompress it first (unzstd FILE)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "Extract it first (7z x FILE)"),
    (b"Rar!\x1a\x07", "a RAR archive", "Extract it first"),
    (b"PAR1", "a Parquet file", "Rename it to end in .parquet (Parquet is read directly)"),
    (b"ARROW1", "an Arrow / Feather file", "Save it as Parquet or CSV"),
    (b"%PDF-", "a PDF document", "Export the table inside it as CSV (UTF-8)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.xls / .doc)",
     "Export the sheet as CSV (UTF-8)"),
    (b"SQLite format 3\x00", "an SQLite database", "Export the table as CSV (UTF-8)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "Point at the data file instead"),
    (b"\xff\xd8\xff", "a JPEG image", "Point at the data file instead"),
    (b"GIF8", "a GIF image", "Point at the data file instead"),
    (b"\x7fELF", "an executable (ELF)", "Point at the data file instead"),
    (b"\x93NUMPY", "a NumPy array file", "Save the texts and labels as CSV or Parquet"),
)  # fmt: skip
BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")  # a block or the end-of-stream marker follows
PICKLE = re.compile(rb"\x80[\x02-\x05]")  # protocol 2+: never unpickled, only named


def describe_binary(raw: bytes) -> tuple[str, str] | None:
    """(what the file is, what to do) when ``raw`` starts like a known binary format, else None."""
    for magic, what, advice in MAGIC_NUMBERS:
        if raw.startswith(magic):
            return what, advice
    if BZIP2.match(raw):
        return "a bzip2-compressed file", "Decompress it first (bunzip2 -k FILE)"
    if raw[257:262] == b"ustar":
        return "a tar archive", "Extract it first (tar -xf FILE), or point --data at an aclImdb archive"
    if PICKLE.match(raw):
        return "a Python pickle (never loaded: it could run code)", "Save the data as CSV or Parquet"
    return None


def decode(raw: bytes, encoding: str, where: str) -> str:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"Unknown encoding {encoding!r}. Use a Python codec name such as utf-8.") from None
    binary = describe_binary(raw)
    if binary is not None:
        what, advice = binary
        raise UserError(f"{where} is {what}, not a text file. {advice}, then try again.")
    if not codec.startswith(("utf-16", "utf-32")):
        bom = byte_order_mark(raw)
        if bom and codec in ("utf-8", "utf-8-sig"):
            # A byte-order mark says which: decode it as such (Excel's "Unicode text" is UTF-16).
            try:
                return raw.decode(bom)
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{where}: starts with a {bom.upper()} byte-order mark but byte offset {exc.start} is "
                    f"not valid {bom.upper()}; the file is damaged or truncated. Save it again as UTF-8."
                ) from None
        if bom:
            raise UserError(
                f"{where}: looks like {bom.upper()} text (it starts with a byte-order mark), not {encoding}. "
                f"Pass the file's encoding, e.g. --encoding {bom}."
            )
        if b"\0" in raw:
            wide = guess_wide_unicode(raw)
            if wide:
                raise UserError(
                    f"{where}: looks like {wide.upper()} text (NUL bytes), not {encoding}. "
                    f"Pass the file's encoding, e.g. --encoding {wide}."
                )
            raise UserError(nul_bytes_message(raw, codec, encoding, where))
    if codec == "utf-8" and raw.startswith(codecs.BOM_UTF8):
        codec = encoding = "utf-8-sig"  # drop the mark, or the first column is named "\ufeffid"
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        suggestion = "latin-1" if codec in ("utf-8", "utf-8-sig") else "utf-8"
        raise UserError(
            f"{where}: cannot decode byte 0x{raw[exc.start]:02x} at offset {exc.start} as {encoding}. "
            f"Pass the file's encoding, e.g. --encoding {suggestion}."
        ) from None


def nul_bytes_message(raw: bytes, codec: str, encoding: str, where: str) -> str:
    """NUL bytes in no UTF-16/32 pattern: text padded or damaged with NULs, or a binary file."""
    count, first = raw.count(0), raw.index(0)
    try:
        raw.replace(b"\0", b"").decode(codec)
    except UnicodeDecodeError:
        return (
            f"{where}: not {encoding} text: it holds {count:,} NUL byte(s) (first at byte offset {first:,}) "
            "and other bytes no text has, so it is a binary file or badly damaged. "
            "Export the data as CSV (UTF-8), JSON Lines or Parquet."
        )
    return (
        f"{where}: {encoding} text with {count:,} NUL byte(s) (first at byte offset {first:,}), which no text "
        "file holds: it is damaged or was padded by the program that wrote it. Remove them "
        "(tr -d '\\000' < FILE > FIXED) and try again."
    )


WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def byte_order_mark(raw: bytes) -> str | None:
    """ "utf-16" / "utf-32" when ``raw`` starts with that byte-order mark, else None."""
    return next((codec for bom, codec in WIDE_BOMS if raw.startswith(bom)), None)


def guess_wide_unicode(raw: bytes, sample_size: int = 4096) -> str | None:
    """The codec to suggest when ``raw`` looks like UTF-16/UTF-32 text, else None.

    A byte-order mark gives "utf-16"/"utf-32". Without one, NUL bytes in the first few KB in the
    pattern of wide text do (text in any 8-bit encoding or UTF-8 has none): their position says the
    byte order, e.g. ASCII in UTF-16-LE is "a\\0b\\0". NUL bytes in no such pattern say nothing about
    the encoding (a binary or damaged file): None.
    """
    bom = byte_order_mark(raw)
    if bom:
        return bom
    sample = raw[:sample_size]
    if b"\0" not in sample:
        return None

    def nul_share(start: int, step: int) -> float:
        part = sample[start::step]
        return part.count(0) / len(part) if part else 0.0

    by_four = [nul_share(i, 4) for i in range(4)]
    if min(by_four[1:]) >= 0.9 and by_four[0] < 0.5:
        return "utf-32-le"
    if min(by_four[:3]) >= 0.9 and by_four[3] < 0.5:
        return "utf-32-be"
    even, odd = nul_share(0, 2), nul_share(1, 2)
    if odd >= 0.5 and even < 0.1:
        return "utf-16-le"
    if even >= 0.5 and odd < 0.1:
        return "utf-16-be"
    return None
