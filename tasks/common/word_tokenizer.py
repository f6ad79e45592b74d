"""Word tokenizers with exactly the words of datatrove's, faster: the filters' and MinHash shingles'.

datatrove's default English tokenizer (`SpaCyTokenizer("en")`) runs spaCy's tokenizer *and* a sentencizer
pipe for every word tokenization, although words only need the tokenizer. `WordsOnlySpaCyTokenizer` returns
exactly the same tokens (spaCy's tokenizer is the only component that creates tokens) without the
sentencizer; sentences (C4's filter) still go through the full datatrove path. `ChunkMemoTokenizer`
(MinHash shingles) also memoises spaCy's words per whitespace-delimited chunk.
"""

from __future__ import annotations

import sys
from functools import cache

from datatrove.utils.text import simplify_text
from datatrove.utils.word_tokenizers import SpaCyTokenizer, WordTokenizer, load_word_tokenizer, strip_strings

# A string that breaks spaCy's tokenizer; datatrove retries without it (see SpaCyTokenizer._do_tokenize).
_SPACY_BREAKING_TEXT = "IS_ALPHA"


class WordsOnlySpaCyTokenizer(SpaCyTokenizer):
    """datatrove's spaCy tokenizer, with `word_tokenize` running only spaCy's tokenizer component."""

    def _make_doc(self, text: str):
        try:
            return self.tokenizer.make_doc(text)
        except Exception:
            if _SPACY_BREAKING_TEXT in text:
                return self.tokenizer.make_doc(text.replace(_SPACY_BREAKING_TEXT, ""))
            raise

    def word_tokenize(self, text: str) -> list[str]:
        with self.tokenizer.memory_zone():
            self.tokenizer.max_length = len(text) + 10
            return strip_strings([token.text for token in self._make_doc(text)])


@cache
def shared_word_tokenizer(language: str) -> SpaCyTokenizer:
    """The process-wide word tokenizer for `language` (a spaCy language code such as "en")."""
    import_spacy_without_torch()
    return WordsOnlySpaCyTokenizer(language)


def import_spacy_without_torch() -> None:
    """Import spaCy without letting its thinc import torch, unless torch is loaded already.

    spaCy's rule-based tokenizers never use torch, but thinc imports it when it is installed: about half of
    spaCy's import time (1 s of 2 in every Spark worker of the filter stage). torch itself stays importable
    afterwards; only thinc's torch layers are off in that process.
    """
    if "spacy" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError meanwhile
    try:
        import spacy  # noqa: F401
    finally:
        del sys.modules["torch"]


class ChunkMemoTokenizer:
    """The words of a spaCy rule-based tokenizer on `simplify_text` output, memoised per chunk.

    spaCy's `Tokenizer` splits the text at whitespace and tokenizes every non-whitespace chunk on its own;
    only special cases containing a space span chunks, and `fast_word_tokenizer` uses this class only for
    languages where none survives `simplify_text`. So a text's words are the concatenation of its chunks'
    words. The chunks a text brings that are not memoised yet go through spaCy in one call; the memo is
    emptied when it would exceed `max_entries`, so memory stays bounded on any corpus.
    """

    def __init__(self, words_of: WordsOnlySpaCyTokenizer, max_entries: int = 1 << 20):
        self._words_of = words_of
        self._max_entries = max_entries
        self._memo: dict[str, tuple[str, ...]] = {}

    def _learn(self, chunks: list[str]) -> None:
        """Memoise the words of `chunks` (distinct, not memoised yet) with one spaCy call."""
        nlp = self._words_of.tokenizer
        text = " ".join(chunks)
        with nlp.memory_zone():
            nlp.max_length = len(text) + 10
            try:
                tokens = [(token.text, bool(token.whitespace_)) for token in nlp.make_doc(text)]
            except Exception:  # a chunk that breaks spaCy: datatrove's fallback, chunk by chunk
                tokens = None
        if tokens is None:
            for chunk in chunks:
                self._memo[chunk] = tuple(self._words_of.word_tokenize(chunk))
            return
        position, words = 0, []
        for word, followed_by_space in tokens:  # the space after a chunk's last token ends the chunk
            words.append(word)
            if followed_by_space:
                self._memo[chunks[position]] = tuple(words)
                position, words = position + 1, []
        self._memo[chunks[position]] = tuple(words)

    def word_tokenize(self, text: str) -> list[str]:
        """Exactly the words of datatrove's `SpaCyTokenizer(language).word_tokenize(text)`."""
        chunks = text.split()
        memo = self._memo
        unseen = [chunk for chunk in dict.fromkeys(chunks) if chunk not in memo]
        if unseen:
            if len(memo) + len(unseen) > self._max_entries:
                memo.clear()
                unseen = list(dict.fromkeys(chunks))
            self._learn(unseen)
        return [word for chunk in chunks for word in memo[chunk]]


def _spans_chunks(rule: str) -> bool:
    """True for a special case with a space inside that can occur in `simplify_text` output."""
    inner = rule.strip()
    return any(char.isspace() for char in inner) and simplify_text(inner) == inner


def fast_word_tokenizer(language: str) -> ChunkMemoTokenizer | WordTokenizer:
    """A faster tokenizer with the words of datatrove's for `language` on `simplify_text` output.

    Chunk-memoised where datatrove uses spaCy's rule-based tokenizer and no special case spans chunks;
    datatrove's own otherwise (e.g. jieba for Chinese, Japanese, Vietnamese, Scottish Gaelic).
    """
    from spacy.tokenizer import Tokenizer

    reference = load_word_tokenizer(language)  # spaCy loads lazily: only the shared pipeline is loaded here
    if type(reference) is not SpaCyTokenizer:
        return reference
    words_of = shared_word_tokenizer(language)
    rules = words_of.tokenizer.tokenizer
    if type(rules) is not Tokenizer or any(_spans_chunks(rule) for rule in rules.rules):
        return reference
    return ChunkMemoTokenizer(words_of)
