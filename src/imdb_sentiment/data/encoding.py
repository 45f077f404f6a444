"""Bytes to text: the requested codec, with the mistakes users actually make caught and named (a
UTF-16 / UTF-32 file, a UTF-8 byte-order mark, Latin-1 text read as UTF-8)."""

from __future__ import annotations

import codecs

from imdb_sentiment.errors import UserError


def decode(raw: bytes, encoding: str, where: str) -> str:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"Unknown encoding {encoding!r}. Use a Python codec name such as utf-8.") from None
    if not codec.startswith(("utf-16", "utf-32")):
        wide = guess_wide_unicode(raw)
        if wide in ("utf-16", "utf-32") and codec in ("utf-8", "utf-8-sig"):
            # A byte-order mark says which: decode it as such (Excel's "Unicode text" is UTF-16).
            try:
                return raw.decode(wide)
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{where}: starts with a {wide.upper()} byte-order mark but byte offset {exc.start} is "
                    f"not valid {wide.upper()}; the file is damaged or truncated. Save it again as UTF-8."
                ) from None
        if wide:
            evidence = "it starts with a byte-order mark" if wide in ("utf-16", "utf-32") else "NUL bytes"
            raise UserError(
                f"{where}: looks like {wide.upper()} text ({evidence}), not {encoding}. "
                f"Pass the file's encoding, e.g. --encoding {wide}."
            )
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


WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def guess_wide_unicode(raw: bytes, sample_size: int = 4096) -> str | None:
    """The codec to suggest when ``raw`` looks like UTF-16/UTF-32 text, else None.

    A byte-order mark gives "utf-16"/"utf-32". Without one, NUL bytes in the first few KB do (text
    in any 8-bit encoding or UTF-8 has none): their position says the byte order, e.g. ASCII in
    UTF-16-LE is "a\0b\0". NUL bytes in no clear pattern still suggest UTF-16, never Latin-1.
    """
    for bom, codec in WIDE_BOMS:
        if raw.startswith(bom):
            return codec
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
    return "utf-16"
