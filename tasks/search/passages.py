"""Documents -> passages for the search index: overlapping windows of words, with a title for each document.

A passage keeps the document's own text between its first and last word (line breaks and punctuation as
they were). The title is the document's `title` field when it has one, else its first line when that
reads like a title (short, not a sentence), else words from the URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

WORD_AND_SPACE = re.compile(r"\S+\s*")  # a word with the whitespace after it
URL_WORD_SEPARATORS = re.compile(r"[-_+.]+")
SENTENCE_END = (".", "!", "?", ":", ";", ",")


@dataclass(frozen=True)
class PassageConfig:
    """How documents are cut: `words` per passage, `overlap` words shared by neighbours, title length."""

    words: int = 150
    overlap: int = 30
    title_words: int = 15

    def __post_init__(self) -> None:
        if self.words < 1:
            raise ValueError(f"passage words must be >= 1, got {self.words}")
        if not 0 <= self.overlap < self.words:
            raise ValueError(f"passage overlap must be in [0, words={self.words}), got {self.overlap}")
        if self.title_words < 1:
            raise ValueError(f"title words must be >= 1, got {self.title_words}")


@dataclass(frozen=True)
class Passage:
    """One searchable piece of a document; `position` is its index within the document."""

    doc_id: str
    url: str
    title: str
    text: str
    position: int


def chunk_words(text: str, words: int, overlap: int) -> list[str]:
    """Windows of `words` words, each starting `words - overlap` words after the previous one.

    The last window ends at the last word and, in a text of at least `words` words, is `words` long too
    (sharing more with the one before it); no window lies wholly inside another.
    """
    tokens = WORD_AND_SPACE.findall(text.lstrip())
    stride = words - overlap
    chunks = []
    for start in range(0, len(tokens), stride):
        end = min(start + words, len(tokens))
        start = max(0, end - words)  # the last window is as long as the others: it starts earlier
        chunks.append("".join(tokens[start:end]).rstrip())
        if end == len(tokens):
            break
    return chunks


def url_title(url: str) -> str:
    """Words from a URL: its last path segment (no extension) and the host, e.g. 'notes on mastodon (x.io)'."""
    parts = urlsplit(url or "")
    segments = [s for s in unquote(parts.path).split("/") if s]
    host = parts.hostname or ""
    if not segments:
        return host
    last = segments[-1].rsplit(".", 1)[0] if "." in segments[-1] else segments[-1]
    words = " ".join(w for w in URL_WORD_SEPARATORS.split(last) if w)
    return f"{words} ({host})" if words and host else words or host


def document_title(text: str, url: str, max_words: int) -> str:
    """The first line when it reads like a title (at most `max_words` words, no sentence end), else from the URL."""
    first = text.lstrip().split("\n", 1)[0].strip()
    if first and len(first.split(None, max_words)) <= max_words and not first.endswith(SENTENCE_END):
        return first
    return url_title(url)


def document_passages(document: Mapping, config: PassageConfig) -> Iterator[Passage]:
    """The passages of one document row (id, url, text, and title if any); none for an empty text."""
    text = document.get("text") or ""
    url = document.get("url") or ""
    title = (document.get("title") or "").strip() or document_title(text, url, config.title_words)
    for position, chunk in enumerate(chunk_words(text, config.words, config.overlap)):
        yield Passage(str(document["id"]), url, title, chunk, position)
