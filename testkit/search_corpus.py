"""Corpora in the data build's output layout (`<workdir>/<dump>/scrubbed/`) for the search index.

Real documents of the sample WARCs: CommonCrawl's own extracted text (the WET files beside two sample
WARCs) and the pages of bench-990-pages.warc.gz (trafilatura's evaluation snippets, with their URLs).
Synthetic volume: documents of random real English sentences (lingua's Leipzig sentences). Many real facts:
lingua's sentences of every language, a few consecutive ones per document, each sentence in one document.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from warcio.archiveiterator import ArchiveIterator

from fineforge.tasks.common.documents import DOCUMENT_SCHEMA
from fineforge.tasks.common.stage import STATS_FILE
from fineforge.tasks.scrub.config import SCRUBBED
from testkit.token_corpus import real_documents

WET_FILES = {
    "CC-MAIN-2014-35": "cc-main-2014-35-sample.warc.wet",
    "CC-MAIN-2024-22": "cc-main-2024-22-one-page.warc.wet.gz",
}
BENCH_DUMP = "bench-990-pages"
SENTENCES_DUMP = "lingua-sentences"
ROWS_PER_PART = 10_000


def wet_documents(path: Path) -> list[tuple[str, str, str]]:
    """(id, url, text) of the WET conversion records of one file."""
    documents = []
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type == "conversion":
                headers = record.rec_headers
                text = record.content_stream().read().decode("utf-8")
                documents.append((headers.get_header("WARC-Record-ID"), headers.get_header("WARC-Target-URI"), text))
    return documents


def write_dump(workdir: Path, dump: str, documents: Iterable[tuple[str, str, str]]) -> Path:
    """Write documents as the dump's complete final stage (Parquet parts + stats.json); return the folder."""
    folder = Path(workdir) / dump / SCRUBBED
    folder.mkdir(parents=True, exist_ok=True)
    rows, parts, count = [], 0, 0

    def flush() -> None:
        nonlocal rows, parts
        table = pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)
        pq.write_table(table, folder / f"part-{parts:05d}.parquet", compression="zstd")
        rows, parts = [], parts + 1

    for doc_id, url, text in documents:
        rows.append({"id": doc_id, "url": url, "text": text, "dump": dump, "text_length": len(text)})
        count += 1
        if len(rows) == ROWS_PER_PART:
            flush()
    if rows or not parts:
        flush()
    (folder / STATS_FILE).write_text(json.dumps({"stage": SCRUBBED, "dump": dump, "documents_out": count}))
    return folder


def write_sample_corpus(shared_data: Path, workdir: Path) -> dict[str, int]:
    """The real documents, one dump per source; return documents per dump."""
    dumps = {dump: wet_documents(shared_data / "warc" / name) for dump, name in WET_FILES.items()}
    dumps[BENCH_DUMP] = real_documents(shared_data, pages=990, chunks=0)
    for dump, documents in dumps.items():
        write_dump(workdir, dump, documents)
    return {dump: len(documents) for dump, documents in dumps.items()}


def sentence_documents(shared_data: Path, per_document: int = 5) -> Iterator[tuple[str, str, str]]:
    """lingua's real sentences (75 languages x 1,000, Leipzig web corpora) as documents of `per_document`
    consecutive sentences of one language, in file order, with made-up URLs."""
    for path in sorted((shared_data / "lid" / "lingua-sentences").glob("*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
        for n, start in enumerate(range(0, len(lines), per_document)):
            yield (f"<urn:uuid:lingua-{path.stem}-{n:05d}>", f"https://example.org/lingua/{path.stem}/{n}",
                   " ".join(lines[start : start + per_document]))


def synthetic_documents(shared_data: Path, count: int, sentences_per_document: tuple[int, int] = (5, 40),
                        seed: int = 0):
    """`count` documents of random real English sentences, with made-up URLs."""
    sentences = (shared_data / "lid" / "lingua-sentences" / "en.txt").read_text().split("\n")
    sentences = [s for s in sentences if s.strip()]
    rng = random.Random(seed)
    for n in range(count):
        text = " ".join(rng.choices(sentences, k=rng.randint(*sentences_per_document)))
        yield f"<urn:uuid:synthetic-{n:08d}>", f"https://example.org/synthetic/{n}", text
