"""The chunk-memoised tokenizer of MinHash shingles gives exactly datatrove's words."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import pytest
from datatrove.utils.text import simplify_text
from datatrove.utils.word_tokenizers import load_word_tokenizer

from fineforge.tasks.common.word_tokenizer import (
    ChunkMemoTokenizer,
    WordsOnlySpaCyTokenizer,
    _spans_chunks,
    fast_word_tokenizer,
)
from testkit.dedup_corpus import real_texts

LANGUAGES = ("en", "de", "fr", "ru", "fi", "pl", "tr", "el")


@pytest.fixture(scope="module")
def simplified_texts(shared_data) -> list[str]:
    """Real pages and web sentences of 30 languages, normalised as MinHash normalises them."""
    rng = random.Random(7)
    texts = rng.sample(real_texts(shared_data), 60)
    for path in sorted((shared_data / "lid" / "lingua-sentences").glob("*.txt"))[:30]:
        lines = path.read_text().splitlines()
        texts += [" ".join(rng.sample(lines, 12)) for _ in range(3)]
    edge_cases = ["", "   ", "IS_ALPHA is_alpha", "cannot gonna dont", "a\u00a0b\u2003c", "x ‘ s y", "x ‘s y"]
    return [simplify_text(text) for text in texts + edge_cases]


@pytest.mark.parametrize("language", LANGUAGES)
def test_same_words_as_datatrove(simplified_texts, language):
    fast = fast_word_tokenizer(language)
    assert isinstance(fast, ChunkMemoTokenizer)
    reference = load_word_tokenizer(language)
    for text in simplified_texts:
        assert fast.word_tokenize(text) == reference.word_tokenize(text), text[:80]


def test_memo_stays_bounded_and_correct(simplified_texts):
    reference = load_word_tokenizer("en")
    small = ChunkMemoTokenizer(WordsOnlySpaCyTokenizer("en"), max_entries=50)
    largest_text = 0  # distinct chunks: a text's own chunks are always memoised while it is tokenized
    for text in simplified_texts + simplified_texts[:10]:
        assert small.word_tokenize(text) == reference.word_tokenize(text)
        largest_text = max(largest_text, len(set(text.split())))
        assert len(small._memo) <= max(50, largest_text)


def test_special_cases_spanning_chunks_are_recognised():
    assert _spans_chunks("a bhos")  # Scottish Gaelic: a multi-word special case of plain words
    assert not _spans_chunks("и др.")  # its full stop never survives simplify_text
    assert not _spans_chunks("\n") and not _spans_chunks("don't")


def test_the_shared_tokenizer_loads_spacy_without_torch():
    """spaCy imported with torch held back gives datatrove's words; torch stays importable afterwards."""
    script = textwrap.dedent("""
        import sys
        from datatrove.utils.word_tokenizers import load_word_tokenizer
        from fineforge.tasks.common.word_tokenizer import shared_word_tokenizer
        text = "It's 3.5 U.S. dollars, isn't it? Don't (re)tokenize e-mail@example.com!"
        words = shared_word_tokenizer("en").word_tokenize(text)
        assert "torch" not in sys.modules, "spaCy imported torch"
        assert words == load_word_tokenizer("en").word_tokenize(text), words
        import torch
        print(torch.ones(2).sum().item())
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["2.0"]
