"""Fill-in-the-blank queries: a `___` in a query asks for the words it stands for, and each result marks them.

A search engine bolds the words of a snippet that match; a blank asks for the one word (a number such as
`1578`, `6,000` or `19.01`, or a name) that stands between the query's words around it. Where a passage has
the blank's neighbours - `ANCHOR_WORDS` words on each side, in order, any case and punctuation between them,
or else fewer, down to the nearest word on each side (a query may be miscopied further out) - the word
between them is marked `**1578**`, and the results start with the words found (`___ = 1578`, as a search
engine's answer box), so a reader (or a model) takes the answer from there:

    query:   The abbey of Saint Gallen was founded in ___ by Irish monks.
    results: ___ = 1578
             [1] title (url)
             ... The abbey of Saint Gallen was founded in **1578** by Irish monks. It ...
"""

from __future__ import annotations

import re

BLANK = "___"
MARK = "**"
ANCHOR_WORDS = 3
WORDS = re.compile(r"\w+")
# the word a blank stands for: letters or digits, inner `.` or `,` kept (6,000 and 19.01)
FILLER = r"\w+(?:[.,]\w+)*"
BETWEEN = r"\W+"


def blank_patterns(query: str) -> list[re.Pattern]:
    """What a passage may hold for the query's first blank to be filled, the most neighbours first (none: no
    blank, or no word beside it)."""
    before, blank, after = query.partition(BLANK)
    left = WORDS.findall(before)[-ANCHOR_WORDS:]
    right = WORDS.findall(after.replace(BLANK, " "))[:ANCHOR_WORDS]
    if not blank or not (left or right):
        return []
    patterns = []
    for n in range(ANCHOR_WORDS, 0, -1):
        parts = [re.escape(w) for w in left[len(left) - min(n, len(left)):]] + [f"({FILLER})"]
        parts += [re.escape(w) for w in right[:n]]
        patterns.append(re.compile(r"(?<!\w)" + BETWEEN.join(parts) + r"(?!\w)", re.IGNORECASE))
    return patterns


def marked(words: str) -> str:
    """Words as a result marks them."""
    return f"{MARK}{words}{MARK}"


def blank_pattern(query: str, text: str) -> re.Pattern | None:
    """The pattern of `blank_patterns` with the most neighbours that occurs in the text (None: none does)."""
    return next((pattern for pattern in blank_patterns(query) if pattern.search(text)), None)


def mark_blank(query: str, text: str) -> str:
    """The text with the words a blank of the query stands for marked, wherever the most of its neighbours occur."""
    pattern = blank_pattern(query, text)
    if pattern is None:
        return text
    return pattern.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + marked(m.group(1))
                       + m.group(0)[m.end(1) - m.start(0):], text)


def fillers(query: str, texts: list[str]) -> list[str]:
    """The distinct words that fill the query's blank in the texts, in order."""
    found = (m.group(1) for text in texts if (p := blank_pattern(query, text)) for m in p.finditer(text))
    return list(dict.fromkeys(found))
