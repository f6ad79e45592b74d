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
from collections.abc import Sequence

BLANK = "___"
MARK = "**"
ANCHOR_WORDS = 3
WORDS = re.compile(r"\w+")
# the word a blank stands for: letters or digits, inner `.` or `,` kept (6,000 and 19.01)
FILLER = r"\w+(?:[.,]\w+)*"
BETWEEN = r"\W+"


def blank_patterns(query: str) -> list[re.Pattern]:
    """What a passage may hold for the query's first blank to be filled, the most neighbours first, each with the
    groups (words before)(filler)(words after) (none: no blank, or no word beside it)."""
    before, blank, after = query.partition(BLANK)
    left = WORDS.findall(before)[-ANCHOR_WORDS:]
    right = WORDS.findall(after.replace(BLANK, " "))[:ANCHOR_WORDS]
    if not blank or not (left or right):
        return []
    sources = dict.fromkeys(
        rf"(?<!\w)({''.join(re.escape(w) + BETWEEN for w in left[-n:])})({FILLER})"
        rf"({''.join(BETWEEN + re.escape(w) for w in right[:n])})(?!\w)"
        for n in range(ANCHOR_WORDS, 0, -1))
    return [re.compile(source, re.IGNORECASE) for source in sources]


def marked(words: str) -> str:
    """Words as a result marks them."""
    return f"{MARK}{words}{MARK}"


def fill_blanks(query: str, texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """The texts with the words the query's blank stands for marked, in each where the most of the blank's
    neighbours occur, and those words, each once, in order."""
    patterns, found = blank_patterns(query), {}

    def mark(match: re.Match) -> str:
        found.setdefault(match[2])
        return match[1] + marked(match[2]) + match[3]

    filled = []
    for text in texts:
        pattern = next((p for p in patterns if p.search(text)), None)
        filled.append(pattern.sub(mark, text) if pattern else text)
    return filled, list(found)
