"""One word tokenizer per process, shared by the Gopher, C4 and FineWeb filters.

datatrove's default English tokenizer (`SpaCyTokenizer("en")`) runs spaCy's tokenizer *and* a sentencizer
pipe for every word tokenization, although words only need the tokenizer. `WordsOnlySpaCyTokenizer` returns
exactly the same tokens (spaCy's tokenizer is the only component that creates tokens) without the
sentencizer; sentences (C4's filter) still go through the full datatrove path.
"""

from __future__ import annotations

from functools import cache

from datatrove.utils.word_tokenizers import SpaCyTokenizer, strip_strings

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
    return WordsOnlySpaCyTokenizer(language)
