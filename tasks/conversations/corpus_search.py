"""Search-tool conversations from the built corpus: a fact of one of its sentences, blanked and asked back.

Knowledge in the context window is working memory: these conversations teach a model to look a fact up
in fineforge's own corpus instead of guessing. From each document of the indexed corpus (dumps, files and
rows in order) the generator takes sentences of 6-30 words that start and end like one and hold a
distinctive token, found once in the sentence: a number of two or more digits ("1578", "6,000", "19.01")
or, failing that, a capitalised word inside the sentence (a name; in German any noun). The token becomes
a blank, and the question asks for it:

    user:      Which number is missing from this sentence of the corpus? "The abbey of Saint Gallen was
               founded in ___ by Irish monks."
    assistant: <SEARCH_START>The abbey of Saint Gallen was founded in ___ by Irish monks.<SEARCH_END>
               <OUTPUT_START>___ = 1578\n\n[1] title (url)\n... founded in **1578** by Irish monks ...<OUTPUT_END>
               The answer is 1578.

The query is the blanked sentence itself, as a user pastes it into a search engine (a model copies it from
the question in one piece; the sentence's 4 longest words as keywords were a choice tiny models did not learn
to copy). The output block is what `CorpusSearch` returns for it, the real top-k passages as the runtime pastes
them, the blank's filler first and marked (`tasks/search/blanks.py`): the answer is copied from there. A question
whose sentence is not in those results is dropped and counted (`not_in_results`), as is a sentence asked
before (`duplicate_question`, boilerplate repeated across pages). The control variant (`tool=False`) answers
the same questions directly. Each record carries its answer; the sentences of a document are drawn from the
seed and the document's id.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fineforge.model.chat import ASSISTANT, USER
from fineforge.tasks.conversations.records import ConversationRecord, SourceCounts, skip
from fineforge.tasks.conversations.tool_turns import answer_line, search_call
from fineforge.tasks.search.blanks import BLANK, marked
from fineforge.tasks.search.config import corpus_files, indexed_dumps
from fineforge.tasks.search.index import SearchError, parquet_documents
from fineforge.tasks.search.query import CorpusSearch, format_hits

FactKind = Literal["number", "name"]
FACT_KINDS: tuple[str, ...] = ("number", "name")
NOT_IN_RESULTS = "not_in_results"
DUPLICATE_QUESTION = "duplicate_question"
SENTENCE_WORDS = (6, 30)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
SENTENCE_END = (".", "!", "?")
# a number not glued to other digits, letters or number punctuation: 1578, 6,000, 19.01 (two digits at least)
NUMBER = re.compile(r"(?<![\w.,:/-])(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w]|[.,:/-]\d)")
WORD = re.compile(r"\w+")
MIN_NAME_LETTERS = 3

QUESTIONS: dict[str, tuple[str, ...]] = {
    "number": ('Which number is missing from this sentence of the corpus? "{cloze}"',
               'Search the corpus and fill in the blank: "{cloze}"', 'What number goes in the blank? "{cloze}"'),
    "name": ('Which name is missing from this sentence of the corpus? "{cloze}"',
             'Search the corpus and fill in the blank: "{cloze}"', 'Which word goes in the blank? "{cloze}"'),
}


@dataclass(frozen=True)
class Fact:
    """A sentence of a document with one distinctive token: the answer, and where it sits in the sentence."""

    doc_id: str
    sentence: str
    kind: str
    start: int
    end: int

    @property
    def answer(self) -> str:
        return self.sentence[self.start : self.end]

    @property
    def cloze(self) -> str:
        """The sentence with its answer blanked."""
        return self.sentence[: self.start] + BLANK + self.sentence[self.end :]

    @property
    def query(self) -> str:
        """What the assistant searches for: the blanked sentence, as a user pastes it into a search engine (a small
        model copies it from the question in one piece; a choice of keywords it did not learn)."""
        return " ".join(self.cloze.split())


def sentences(text: str) -> Iterator[str]:
    """The text's sentences of 6-30 words that start and end like one (a line is never joined to the next)."""
    for piece in SENTENCE_BREAK.split(text):
        sentence = piece.strip()
        starts = sentence[:1].isupper() or sentence[:1].isdigit()
        words = len(sentence.split())
        if starts and sentence.endswith(SENTENCE_END) and SENTENCE_WORDS[0] <= words <= SENTENCE_WORDS[1]:
            yield sentence


def number_span(sentence: str) -> tuple[int, int] | None:
    """The span of the sentence's only number of two or more digits (None: none, or more than one)."""
    spans = [m.span() for m in NUMBER.finditer(sentence) if sum(c.isdigit() for c in m.group()) >= 2]
    return spans[0] if len(spans) == 1 else None


def name_span(sentence: str) -> tuple[int, int] | None:
    """The span of the first capitalised word after the first word that occurs once in the sentence."""
    words = list(WORD.finditer(sentence))[1:]
    texts = [m.group() for m in words]
    for match in words:
        word = match.group()
        if (len(word) >= MIN_NAME_LETTERS and word.isalpha() and word[0].isupper() and word[1:].islower()
                and texts.count(word) == 1):
            return match.span()
    return None


def sentence_fact(doc_id: str, sentence: str, kinds: Sequence[str]) -> Fact | None:
    """The sentence's fact of the first kind it has (in the order of `kinds`), or None."""
    finders = {"number": number_span, "name": name_span}
    for kind in kinds:
        span = finders[kind](sentence)
        if span is not None:
            return Fact(doc_id, sentence, kind, *span)
    return None


def document_facts(document: dict, kinds: Sequence[str], per_document: int, seed: int) -> list[Fact]:
    """Up to `per_document` facts of a document, drawn from the seed and its id, in text order."""
    doc_id = str(document["id"])
    facts = [f for s in sentences(document.get("text") or "") if (f := sentence_fact(doc_id, s, kinds))]
    if len(facts) <= per_document:
        return facts
    chosen = sorted(random.Random(f"{seed}/{doc_id}").sample(range(len(facts)), per_document))
    return [facts[i] for i in chosen]


def corpus_documents(workdir: str | Path, dumps: Sequence[str] | None) -> Iterator[dict]:
    """The indexed corpus's documents: each dump (sorted) in file and row order."""
    for dump in sorted(dumps or indexed_dumps(Path(workdir))):
        yield from parquet_documents(corpus_files(Path(workdir), dump))


def search_turn(fact: Fact, search: CorpusSearch) -> str | None:
    """The search call with its real results, or None when the fact's sentence is not among them (or its answer is
    not marked there)."""
    try:
        hits = search.search(fact.query)
    except SearchError:
        return None
    results = format_hits(hits, fact.query)
    if not any(fact.sentence in hit.text for hit in hits) or marked(fact.answer) not in results:
        return None
    return search_call(fact.query, results)


def fact_record(fact: Fact, number: int, search_text: str | None, rng: random.Random, seed: int,
                source: str) -> ConversationRecord:
    question = rng.choice(QUESTIONS[fact.kind]).format(cloze=fact.cloze)
    messages = [{"role": USER, "content": question},
                {"role": ASSISTANT, "content": (search_text or "") + answer_line(fact.answer)}]
    return ConversationRecord(id=f"{source}-{seed}-{number}-{fact.kind}", source=source, messages=messages,
                              answer=fact.answer, origin=f"{source}#{number} ({fact.doc_id})")


def corpus_search_conversations(
    workdir: str | Path, k: int = 3, dumps: Sequence[str] | None = None, kinds: Sequence[str] = FACT_KINDS,
    per_document: int = 1, tool: bool = True, seed: int = 0, source: str = "corpus_search",
    counts: SourceCounts | None = None,
) -> Iterator[ConversationRecord]:
    """Questions about facts of the indexed corpus in `workdir`, answered with the search tool (or, with
    `tool=False`, directly); each record carries its answer."""
    unknown = sorted(set(kinds) - set(FACT_KINDS))
    if unknown or not kinds:
        raise ValueError(f"fact kinds {unknown or kinds} unknown; choose from {', '.join(FACT_KINDS)}")
    counts = counts if counts is not None else SourceCounts()
    search = CorpusSearch(workdir, list(dumps) if dumps else None, k)
    rng, asked, number = random.Random(seed), set(), 0
    for document in corpus_documents(workdir, dumps):
        for fact in document_facts(document, kinds, per_document, seed):
            origin = f"{source}: {fact.doc_id}"
            if fact.cloze in asked:
                skip(counts, DUPLICATE_QUESTION, origin, fact.cloze[:200])
                continue
            asked.add(fact.cloze)
            search_text = search_turn(fact, search)
            if search_text is None:
                skip(counts, NOT_IN_RESULTS, origin, f"the top {k} results for {fact.query[:200]!r} lack the sentence")
                continue
            yield fact_record(fact, number, search_text if tool else None, rng, seed, source)
            number += 1
