"""Review cleaning. IMDB texts carry raw HTML (``<br /><br />``) and entities."""

from __future__ import annotations

import html
import re

from imdb_sentiment.config import CleaningConfig

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>\n]{1,200}>")
_SPACE = re.compile(r"\s+")
# html.unescape's own pattern (the module keeps it private): unescaping match by match with it gives
# exactly html.unescape's result while keeping track of where each character came from.
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")

Span = tuple[int, int]


def clean_text(text: str, options: CleaningConfig) -> str:
    if options.html_breaks:
        text = _BREAK.sub(" ", text)
    if options.html_tags:
        text = _TAG.sub(" ", text)
    if options.html_entities:
        text = html.unescape(text)
    if options.whitespace:
        text = _SPACE.sub(" ", text).strip()
    if options.lowercase:
        text = text.lower()
    return text


def clean_texts(texts: list[str], options: CleaningConfig) -> list[str]:
    return [clean_text(text, options) for text in texts]


def clean_text_with_spans(text: str, options: CleaningConfig) -> tuple[str, list[Span]]:
    """:func:`clean_text`, and for each character of the result the span of ``text`` it came from
    (a replaced tag or entity: the whole match), so explanations point into what the user wrote."""
    spans = [(index, index + 1) for index in range(len(text))]
    if options.html_breaks:
        text, spans = _sub_tracked(_BREAK, lambda match: " ", text, spans)
    if options.html_tags:
        text, spans = _sub_tracked(_TAG, lambda match: " ", text, spans)
    if options.html_entities and "&" in text:
        text, spans = _sub_tracked(_CHARREF, lambda match: html.unescape(match.group()), text, spans)
    if options.whitespace:
        text, spans = _sub_tracked(_SPACE, lambda match: " ", text, spans)
        start = len(text) - len(text.lstrip())
        text, spans = text.strip(), spans[start : start + len(text.strip())]
    if options.lowercase:
        lowered = [(char.lower(), span) for char, span in zip(text, spans, strict=True)]
        text, spans = text.lower(), [span for piece, span in lowered for _ in piece]
        if len(spans) != len(text):  # context-dependent lowering (none known): coarse but safe spans
            spans = [spans[min(i, len(spans) - 1)] for i in range(len(text))]
    return text, spans


def _sub_tracked(pattern: re.Pattern[str], replace, text: str, spans: list[Span]) -> tuple[str, list[Span]]:
    pieces: list[str] = []
    new_spans: list[Span] = []
    last = 0
    for match in pattern.finditer(text):
        start, end = match.span()
        pieces.append(text[last:start])
        new_spans.extend(spans[last:start])
        replacement = replace(match)
        pieces.append(replacement)
        new_spans.extend([(spans[start][0], spans[end - 1][1])] * len(replacement))
        last = end
    pieces.append(text[last:])
    new_spans.extend(spans[last:])
    return "".join(pieces), new_spans
