"""datatrove's `GopherRepetitionFilter` with the same decisions, its n-gram counting done faster.

datatrove counts n-grams in Python loops: every n-gram is joined and counted one at a time (`find_top_duplicate`
increments a Counter per element, `find_all_duplicate` joins each n-gram as it walks). Here the n-grams are
built with `map` over zipped word lists and counted by `Counter`'s C loop; the walk of `find_all_duplicate`
(which skips the n words of a repeated n-gram) runs only when a document has a repeated n-gram at all.
The strings, counts, ties and so the drop reasons are datatrove's (`tests/tasks/filter/test_gopher_repetition.py`).
"""

from __future__ import annotations

from collections import Counter

from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import split_into_words


def n_grams(words: list[str], n: int, separator: str) -> list[str]:
    """The n-grams of `words` joined by `separator`: datatrove's `get_n_grams` (separator " ")."""
    return list(map(separator.join, zip(*(words[k:] for k in range(n)), strict=False)))


def top_duplicate_chars(grams: list[str]) -> int:
    """datatrove's `find_top_duplicate`: characters of the most frequent n-gram (the first seen on a tie) times
    its count."""
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def all_duplicate_chars(words: list[str], n: int) -> int:
    """datatrove's `find_all_duplicate`: characters of the n-grams (joined without separator) seen before,
    skipping the n words of each."""
    grams = n_grams(words, n, "")
    if len(set(grams)) == len(grams):  # no n-gram repeats: the walk would find nothing
        return 0
    seen: set[str] = set()
    repeated, index = 0, 0
    while index < len(grams):
        gram = grams[index]
        if gram in seen:
            repeated += len(gram)
            index += n
        else:
            seen.add(gram)
            index += 1
    return repeated


class FastGopherRepetitionFilter(GopherRepetitionFilter):
    """`GopherRepetitionFilter`, each check in datatrove's order with its thresholds and reasons."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if not text:
            return False, "empty"
        paragraphs = self.paragraph_exp.split(text.strip())
        paragraphs_duplicates, char_duplicates = find_duplicates(paragraphs)
        if self.dup_para_frac and paragraphs_duplicates / len(paragraphs) > self.dup_para_frac:
            return False, "dup_para_frac"
        if self.dup_para_char_frac and char_duplicates / len(text) > self.dup_para_char_frac:
            return False, "dup_para_char_frac"
        lines = self._line_splitter.split(text)
        line_duplicates, char_duplicates = find_duplicates(lines)
        if self.dup_line_frac and line_duplicates / len(lines) > self.dup_line_frac:
            return False, "dup_line_frac"
        if self.dup_line_char_frac and char_duplicates / len(text) > self.dup_line_char_frac:
            return False, "dup_line_char_frac"
        words = split_into_words(text, self.language)
        for n, n_frac in self.top_n_grams:
            grams = n_grams(words, n, " ")
            if grams and top_duplicate_chars(grams) / len(text) > n_frac:
                return False, f"top_{n}_gram"
        for n, n_frac in self.dup_n_grams:
            if all_duplicate_chars(words, n) / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"
        return True
