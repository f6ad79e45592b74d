"""The faster Gopher repetition filter decides every document as datatrove's own, for the same reason."""

from __future__ import annotations

import json

from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter

from fineforge.tasks.common.word_tokenizer import shared_word_tokenizer
from fineforge.tasks.filter.gopher_repetition import FastGopherRepetitionFilter

CHUNK = 2000


def _documents(shared_data) -> list[str]:
    """Real text of every kind the filter meets: plays (repeated speaker lines), web snippets, 75 languages;
    plus a few made to repeat n-grams, lines and paragraphs."""
    play = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:400_000]
    texts = [play[i : i + CHUNK] for i in range(0, len(play), CHUNK)]
    pages = json.loads((shared_data / "html" / "trafilatura-evaldata.json").read_text()).values()
    texts += ["\n".join(page.get("with", [])) for page in pages]
    for path in sorted((shared_data / "lid" / "lingua-sentences").glob("*.txt"))[:20]:
        texts.append("\n".join(path.read_text().splitlines()[:40]))
    sentence = "the quick brown fox jumps over the lazy dog near the river bank today"
    texts += [f"{sentence} " * k + play[:500] for k in (1, 2, 3, 5)]
    texts += ["\n\n".join([sentence] * 4 + [play[:300]]), "\n".join([sentence] * 3 + [play[:900]]), ""]
    return texts


def test_fast_filter_decides_as_datatrove(shared_data):
    words = shared_word_tokenizer("en")
    reference, fast = GopherRepetitionFilter(language=words), FastGopherRepetitionFilter(language=words)
    texts = _documents(shared_data)
    decisions = [fast.filter(Document(text=t, id=str(i))) for i, t in enumerate(texts)]
    assert decisions == [reference.filter(Document(text=t, id=str(i))) for i, t in enumerate(texts)]
    reasons = {d[1] for d in decisions if d is not True}
    assert len(reasons) >= 4 and sum(d is True for d in decisions) > len(texts) / 4  # both kinds, many reasons
