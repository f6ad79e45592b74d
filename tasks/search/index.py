"""A tantivy BM25 index of passages: add a dump's Parquet documents to it, query it.

Fields: `title` and `text` are analysed with tantivy's `en_stem` (lower case, English stemming) and
searched together, a title match weighing `TITLE_BOOST` times a text match; `dump`, `doc_id` and `url`
are stored as they are (`dump` also indexed, to replace or filter a dump's passages); `position` is the
passage's index in its document. Queries are reduced to their lower-case words without English stop
words (tantivy's analyzer), so text a model writes (quotes, colons, `2+2?`, AND) never meets tantivy's
query syntax, and "what is the capital of France" weighs "capital" and "france".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import tantivy

from fineforge.tasks.search.passages import Passage, PassageConfig, document_passages

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # part of the stage fingerprint: a new schema rebuilds every index
TITLE_BOOST = 2.0
SEARCH_FIELDS = ["title", "text"]
MAX_QUERY_WORDS = 64
READ_BATCH_ROWS = 1024
WRITER_HEAP_BYTES = 128_000_000


def _query_analyzer(*filters: tantivy.Filter) -> tantivy.TextAnalyzer:
    builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.lowercase())
    for extra in filters:
        builder = builder.filter(extra)
    return builder.build()


QUERY_WORDS = _query_analyzer()
QUERY_CONTENT_WORDS = _query_analyzer(tantivy.Filter.stopword("english"))


class SearchError(Exception):
    """A search that cannot run: no index, an unreadable index, or a query without words."""


@dataclass(frozen=True)
class SearchHit:
    """One ranked passage."""

    score: float
    dump: str
    doc_id: str
    url: str
    title: str
    text: str
    position: int


def index_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("dump", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("doc_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("url", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("title", stored=True, tokenizer_name="en_stem")
    builder.add_text_field("text", stored=True, tokenizer_name="en_stem")
    builder.add_unsigned_field("position", stored=True)
    return builder.build()


def parquet_documents(files: Iterable[Path]) -> Iterator[dict]:
    """Document rows (id, url, text, and title when the corpus has one) of Parquet files, a batch at a time."""
    for path in files:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        missing = [c for c in ("id", "text") if c not in names]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} (columns: {names})")
        columns = [c for c in ("id", "url", "title", "text") if c in names]
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
            yield from batch.to_pylist()


def add_dump(writer: tantivy.IndexWriter, dump: str, documents: Iterable[dict], config: PassageConfig) -> dict:
    """Replace the passages of `dump` in the index with those of `documents` (until commit); return the counts."""
    writer.delete_documents_by_term("dump", dump)
    counts = {"documents_in": 0, "documents_out": 0, "passages": 0, "empty": 0}
    for document in documents:
        counts["documents_in"] += 1
        added = 0
        for passage in document_passages(document, config):
            writer.add_document(passage_document(dump, passage))
            added += 1
        counts["passages"] += added
        counts["documents_out" if added else "empty"] += 1
    return counts


def passage_document(dump: str, passage: Passage) -> tantivy.Document:
    return tantivy.Document(dump=dump, doc_id=passage.doc_id, url=passage.url, title=passage.title,
                            text=passage.text, position=passage.position)


def open_index(directory: Path, create: bool = False) -> tantivy.Index:
    """The index in `directory` (a new empty one if `create` and there is none); SearchError when unreadable."""
    try:
        if create and not tantivy.Index.exists(str(directory)):
            return tantivy.Index(index_schema(), path=str(directory), reuse=False)
        return tantivy.Index.open(str(directory))
    except ValueError as e:
        raise SearchError(f"cannot read the search index in {directory}: {e}") from e


def query_words(query: str) -> list[str]:
    """The query's words without stop words (all of them when that leaves none), at most MAX_QUERY_WORDS."""
    words = QUERY_CONTENT_WORDS.analyze(query) or QUERY_WORDS.analyze(query)
    return words[:MAX_QUERY_WORDS]


def search_index(index: tantivy.Index, words: list[str], k: int, dumps: list[str] | None = None) -> list[SearchHit]:
    """The top `k` passages for the query words, best first (BM25), from every dump or the named ones."""
    query = index.parse_query(" ".join(words), SEARCH_FIELDS, field_boosts={"title": TITLE_BOOST})
    if dumps:
        in_dumps = tantivy.Query.term_set_query(index.schema, "dump", dumps)
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, in_dumps)])
    searcher = index.searcher()
    hits = []
    for score, address in searcher.search(query, k).hits:
        doc = searcher.doc(address)
        hits.append(SearchHit(score=float(score), dump=doc.get_first("dump"), doc_id=doc.get_first("doc_id"),
                              url=doc.get_first("url"), title=doc.get_first("title"), text=doc.get_first("text"),
                              position=int(doc.get_first("position"))))
    # equal scores (overlapping passages of a document often tie) in a fixed order, not the order of the
    # index's segments, which depends on the timing of the writer's threads and merges
    return sorted(hits, key=lambda hit: (-hit.score, hit.dump, hit.doc_id, hit.position))
