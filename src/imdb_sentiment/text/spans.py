"""Where tokens came from: character spans in the text a user wrote.

Tokenizers here match a regex on the *lower-cased* text. ``str.lower`` can change a text's length
(``"İ".lower()`` is two characters), so spans found in the lower-cased text are mapped back through
each character's own lower-cased length rather than assumed to line up.
"""

from __future__ import annotations

import re

Span = tuple[int, int]


def lowercase_with_positions(text: str) -> tuple[str, list[int] | None]:
    """``text.lower()`` and, when its length differs, the original index of each lowered character
    (None when they line up one to one, the usual case)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered, None
    positions = [index for index, char in enumerate(text) for _ in range(len(char.lower()))]
    if len(positions) != len(lowered):  # context-dependent lowering that changes lengths: none known
        positions = [min(index, len(text) - 1) for index in range(len(lowered))]
    return lowered, positions


def regex_tokens_with_spans(
    pattern: re.Pattern[str], text: str, lowercase: bool = True
) -> tuple[list[str], list[Span]]:
    """The tokens ``pattern.findall`` finds (in the lower-cased text when ``lowercase``), each with its
    (start, end) character span in ``text`` itself. ``translate`` a text before only if it keeps lengths."""
    searched, positions = lowercase_with_positions(text) if lowercase else (text, None)
    tokens, spans = [], []
    for match in pattern.finditer(searched):
        start, end = match.span()
        if positions is not None:
            start, end = positions[start], positions[end - 1] + 1
        tokens.append(match.group())
        spans.append((start, end))
    return tokens, spans
