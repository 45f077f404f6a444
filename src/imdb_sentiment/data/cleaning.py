"""Review cleaning. IMDB texts carry raw HTML (``<br /><br />``) and entities."""

from __future__ import annotations

import html
import re

from imdb_sentiment.config import CleaningConfig

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>\n]{1,200}>")
_SPACE = re.compile(r"\s+")


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
