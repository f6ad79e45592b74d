"""Search the corpus: ranked passages from the work dir's index, and the tool the engine calls."""

from __future__ import annotations

from pathlib import Path

from fineforge.tasks.search.blanks import BLANK, fill_blanks
from fineforge.tasks.search.config import index_path, indexed_dumps
from fineforge.tasks.search.index import SearchError, SearchHit, open_index, query_words, search_index

DEFAULT_K = 3
# Passages fetched per wanted hit, so that k distinct documents remain after keeping each one's best passage;
# more while the last fetched one ties with a kept one (tantivy cuts a tie in the order of its segments).
CANDIDATES_PER_HIT = 4
MAX_CANDIDATES = 4096
BUILD_COMMAND = "fineforge search build --workdir {workdir}"


class CorpusSearch:
    """The search index of a work dir, over every indexed dump or the named ones.

    `search(query, k)` returns ranked passages; calling the object with a query returns the text of the
    top `k` passages, the plain `str -> str` tool the chat engine pastes into the model's context; a `___` in
    the query asks what fills it, and the results mark it (`blanks.py`).
    """

    def __init__(self, workdir: str | Path, dumps: list[str] | None = None, k: int = DEFAULT_K) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.workdir, self.k, self.dumps = Path(workdir), k, dumps or None
        available = sorted(indexed_dumps(self.workdir))
        build = BUILD_COMMAND.format(workdir=self.workdir)
        if not available:
            raise SearchError(f"no search index in {self.workdir}: build it with `{build}`")
        missing = sorted(set(dumps or []) - set(available))
        if missing:
            raise SearchError(f"no search index for {', '.join(missing)} in {self.workdir} (indexed: "
                              f"{', '.join(available)}): build it with `{build} --dump {missing[0]}`")
        self.index = open_index(index_path(self.workdir))

    def search(self, query: str, k: int | None = None) -> list[SearchHit]:
        """The top `k` passages, best first, at most one per document (its best).

        SearchError for a query without words.
        """
        k = k or self.k
        words = query_words(query)
        if not words:
            raise SearchError(f"the query has no words to search for: {query!r}")
        limit = k * CANDIDATES_PER_HIT
        while True:
            hits = search_index(self.index, words, limit, self.dumps)
            kept = best_per_document(hits, k)
            settled = len(kept) == k and hits[-1].score < kept[-1].score
            if settled or len(hits) < limit or limit >= MAX_CANDIDATES:
                return kept
            limit *= 2

    def __call__(self, query: str) -> str:
        """The tool: a query in, the top passages as text out (never raises for what the query says)."""
        try:
            hits = self.search(query)
        except (SearchError, ValueError) as e:
            return f"search error: {e}"
        return format_hits(hits, query) if hits else f"no results for: {query}"


def best_per_document(hits: list[SearchHit], k: int) -> list[SearchHit]:
    """The first `k` hits of distinct documents (neighbouring passages overlap: one per document reads better)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for hit in hits:
        if (hit.dump, hit.doc_id) not in seen and len(kept) < k:
            seen.add((hit.dump, hit.doc_id))
            kept.append(hit)
    return kept


def format_hits(hits: list[SearchHit], query: str = "") -> str:
    """Ranked passages as the model reads them: a header line with title and url, then the passage; what fills a
    blank of the query first (`___ = 1578`) and marked in the passages."""
    texts, found = fill_blanks(query, [hit.text for hit in hits])
    answer = [f"{BLANK} = {', '.join(found)}"] if found else []
    return "\n\n".join(answer + [f"[{rank}] {hit.title} ({hit.url})\n{text}"
                                 for rank, (hit, text) in enumerate(zip(hits, texts, strict=True), 1)])
