"""Search benchmark: index build time and query latency (p50/p99) on the demo corpus and on a synthetic one.

    .venv/bin/python -m benchmarks.search [--demo-workdir work/demo] [--documents 100000] [--queries 300]

For each corpus, side by side on the same documents and queries:
- fineforge's index (`build_search_index`: Parquet -> passages -> tantivy, one writer) and the same
  passages in SQLite FTS5 (standard library, porter stemmer, bm25 with the same title weight): build
  seconds, wall clock and CPU (all threads; on a shared machine the wall clock includes waiting), and
  what cutting the passages alone costs;
- query latency of `CorpusSearch.search(query, k=5)` (query words, BM25, best passage per document,
  stored fields read back) and of the same query in FTS5, p50 and p99 over `--queries` queries made of
  words of random corpus documents; and how often that document is among the 5 hits (recall@5).

The demo corpus is the data build's output in --demo-workdir (`make demo` writes work/demo); the
synthetic one is --documents documents of 5-40 random real English sentences (lingua's Leipzig set).
Nothing is written to the demo work dir: its corpus folders are linked into a temporary one.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from fineforge.tasks.search.config import CORPUS_STAGE, SearchIndexConfig, corpus_dumps, corpus_files
from fineforge.tasks.search.index import TITLE_BOOST, SearchHit, parquet_documents, query_words
from fineforge.tasks.search.job import build_search_index
from fineforge.tasks.search.passages import document_passages
from fineforge.tasks.search.query import CANDIDATES_PER_HIT, CorpusSearch, best_per_document
from testkit.search_corpus import synthetic_documents, write_dump

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
K = 5
WORDS_PER_QUERY = 4
MIN_QUERY_WORD_CHARS = 4


def link_demo_corpus(demo_workdir: Path, workdir: Path) -> bool:
    """Link the demo's `<dump>/scrubbed/` folders into `workdir`; False when there is no demo corpus."""
    dumps = corpus_dumps(demo_workdir)
    for dump in dumps:
        (workdir / dump).mkdir(parents=True)
        (workdir / dump / CORPUS_STAGE).symlink_to((demo_workdir / dump / CORPUS_STAGE).resolve())
    return bool(dumps)


def all_documents(workdir: Path) -> list[dict]:
    return [doc for dump in corpus_dumps(workdir) for doc in parquet_documents(corpus_files(workdir, dump))]


def make_queries(documents: list[dict], count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(document id, query): a few content words drawn from a random document."""
    rng = random.Random(seed)
    queries = []
    while len(queries) < count:
        doc = rng.choice(documents)
        words = [w for w in query_words(doc["text"] or "") if len(w) >= MIN_QUERY_WORD_CHARS and w.isalpha()]
        if len(words) >= WORDS_PER_QUERY:
            queries.append((doc["id"], " ".join(rng.sample(words, WORDS_PER_QUERY))))
    return queries


def cut_passages(documents: list[dict], config: SearchIndexConfig) -> None:
    for doc in documents:
        for _ in document_passages(doc, config.passage_config()):
            pass


def measure_queries(search, queries: list[tuple[str, str]]) -> dict:
    """Latency percentiles (ms) and recall@K of `search(query) -> hits`."""
    latencies, found = [], 0
    for doc_id, query in queries:
        started = time.perf_counter()
        hits = search(query)
        latencies.append((time.perf_counter() - started) * 1000)
        found += any(hit.doc_id == doc_id for hit in hits)
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cuts[49], "p99_ms": cuts[98], "recall": found / len(queries)}


def timed(work):
    """(result, wall seconds, CPU seconds of every thread of this process): on a shared machine both matter."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure_tantivy(workdir: Path, config: SearchIndexConfig, queries: list[tuple[str, str]]) -> dict:
    stats, wall, cpu = timed(lambda: build_search_index(workdir, config).statistics)
    search = CorpusSearch(workdir, k=K)
    return {"build_s": wall, "build_cpu_s": cpu, "passages": stats["passages"], "mb": stats["index_bytes"] / 2**20,
            **measure_queries(search.search, queries)}


def build_fts5(path: Path, documents: list[dict], config: SearchIndexConfig) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("CREATE VIRTUAL TABLE passages USING fts5(doc_id UNINDEXED, url UNINDEXED, title, text, "
               "position UNINDEXED, tokenize='porter unicode61')")
    rows = ((p.doc_id, p.url, p.title, p.text, p.position) for doc in documents
            for p in document_passages(doc, config.passage_config()))
    with db:
        db.executemany("INSERT INTO passages VALUES (?, ?, ?, ?, ?)", rows)
    return db


def fts5_search(db: sqlite3.Connection, query: str) -> list[SearchHit]:
    match = " OR ".join(f'"{word}"' for word in query_words(query))
    rows = db.execute("SELECT bm25(passages, 0, 0, ?, 1.0) AS rank, doc_id, url, title, text, position "
                      "FROM passages WHERE passages MATCH ? ORDER BY rank LIMIT ?",
                      (TITLE_BOOST, match, K * CANDIDATES_PER_HIT)).fetchall()
    return best_per_document([SearchHit(-rank, "", *rest) for rank, *rest in rows], K)


def measure_fts5(path: Path, documents: list[dict], config: SearchIndexConfig, queries: list) -> dict:
    db, wall, cpu = timed(lambda: build_fts5(path, documents, config))
    passages = db.execute("SELECT count(*) FROM passages").fetchone()[0]
    results = measure_queries(lambda query: fts5_search(db, query), queries)
    db.close()
    return {"build_s": wall, "build_cpu_s": cpu, "passages": passages, "mb": path.stat().st_size / 2**20, **results}


def benchmark(name: str, workdir: Path, queries_count: int) -> list[tuple]:
    """Rows of the table for one corpus: tantivy and FTS5 side by side."""
    config = SearchIndexConfig(workdir=str(workdir))
    documents = all_documents(workdir)
    queries = make_queries(documents, queries_count)
    _, wall, cpu = timed(lambda: cut_passages(documents, config))
    print(f"{name}: {len(documents):,} documents, {queries_count} queries; cutting passages alone: {wall:.1f} s "
          f"({cpu:.1f} s CPU)", flush=True)
    tantivy = measure_tantivy(workdir, config, queries)
    fts5 = measure_fts5(workdir / "fts5.db", documents, config, queries)
    return [(name, engine, len(documents), r) for engine, r in (("tantivy", tantivy), ("sqlite-fts5", fts5))]


def print_table(rows: list[tuple]) -> None:
    print(f"\n{'corpus':<12} {'engine':<12} {'documents':>10} {'passages':>10} {'index MB':>9} {'build s':>8} "
          f"{'(CPU s)':>8} {'docs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'recall@5':>9}")
    for name, engine, documents, r in rows:
        print(f"{name:<12} {engine:<12} {documents:>10,} {r['passages']:>10,} {r['mb']:>9.1f} {r['build_s']:>8.1f} "
              f"{r['build_cpu_s']:>8.1f} {documents / r['build_s']:>8,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['recall']:>9.2f}")
    print("\nratios sqlite-fts5 / tantivy (above 1: tantivy is faster):")
    for tantivy, fts5 in zip(rows[::2], rows[1::2], strict=True):
        t, f = tantivy[3], fts5[3]
        print(f"  {tantivy[0]:<12} build {f['build_s'] / t['build_s']:.2f}x   p50 {f['p50_ms'] / t['p50_ms']:.2f}x   "
              f"p99 {f['p99_ms'] / t['p99_ms']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-workdir", type=Path, default=ROOT / "work" / "demo")
    parser.add_argument("--documents", type=int, default=100_000, help="Documents of the synthetic corpus.")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fineforge-search-bench-") as tmp:
        demo = Path(tmp) / "demo"
        if link_demo_corpus(args.demo_workdir, demo):
            rows += benchmark("demo", demo, args.queries)
        else:
            print(f"no demo corpus in {args.demo_workdir} (run `make demo`, or pass --demo-workdir): skipped")
        synthetic = Path(tmp) / "synthetic"
        started = time.perf_counter()
        write_dump(synthetic, "synthetic", synthetic_documents(SHARED, args.documents))
        print(f"synthetic corpus written in {time.perf_counter() - started:.1f} s (not counted)", flush=True)
        rows += benchmark("synthetic", synthetic, args.queries)
    print_table(rows)


if __name__ == "__main__":
    main()
