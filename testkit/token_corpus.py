"""A small Parquet corpus in the data build's output schema, from real text of ../shared/data.

Real documents: the "with" snippets of trafilatura's evaluation pages (many languages) and chunks of
tinyshakespeare. Bad documents beside them: empty, blank, null, invalid UTF-8, and one very long one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DUMP = "CC-MAIN-2020-34"
SHAKESPEARE_CHUNK = 3000
BAD_DOCUMENTS = {"empty": 3, "invalid_utf8": 1}  # "", blank and null are empty; one latin-1 text
LONG_DOCUMENT_CHARS = 60_000


def real_documents(shared_data: Path, pages: int = 300, chunks: int = 60) -> list[tuple[str, str, str]]:
    """(id, url, text) of real documents."""
    evaldata = json.loads((shared_data / "html" / "trafilatura-evaldata.json").read_text())
    docs = []
    for url, entry in list(evaldata.items())[:pages]:
        text = "\n".join(entry.get("with", []))
        if text.strip():
            docs.append((f"<urn:uuid:eval-{len(docs):05d}>", url, text))
    shakespeare = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()
    for i in range(chunks):
        docs.append((f"<urn:uuid:shakespeare-{i:05d}>", "https://example.org/shakespeare",
                     shakespeare[i * SHAKESPEARE_CHUNK : (i + 1) * SHAKESPEARE_CHUNK]))
    return docs


def _table(rows: list[tuple[str, str, bytes | None]]) -> pa.Table:
    """A table in the scrubbed stage's schema; text built from raw bytes (so invalid UTF-8 gets through)."""
    offsets, data, valid = [0], bytearray(), []
    for _, _, raw in rows:
        valid.append(raw is not None)
        data += raw or b""
        offsets.append(len(data))
    validity = pa.array(valid).buffers()[1] if not all(valid) else None
    text = pa.Array.from_buffers(pa.string(), len(rows), [validity, pa.py_buffer(pa.array(offsets, pa.int32())
                                 .buffers()[1]), pa.py_buffer(bytes(data))], null_count=valid.count(False))
    n = len(rows)
    return pa.table({
        "id": [r[0] for r in rows],
        "text": text,
        "url": [r[1] for r in rows],
        "dump": [DUMP] * n,
        "warc_file": ["bench-990-pages.warc.gz"] * n,
        "warc_offset": list(range(n)),
        "crawl_date": ["2020-08-10T00:00:00Z"] * n,
        "language": ["en"] * n,
        "language_score": [0.9] * n,
    })


def write_corpus(shared_data: Path, workdir: Path, files: int = 3, with_bad: bool = True) -> tuple[Path, list]:
    """Write `<workdir>/<dump>/scrubbed/part-*.parquet`; return the folder and the real documents."""
    docs = real_documents(shared_data)
    rows: list[tuple[str, str, bytes | None]] = [(i, u, t.encode()) for i, u, t in docs]
    if with_bad:
        long_text = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:LONG_DOCUMENT_CHARS]
        rows += [
            ("<urn:uuid:bad-empty>", "https://example.org/empty", b""),
            ("<urn:uuid:bad-blank>", "https://example.org/blank", b"   \n\t"),
            ("<urn:uuid:bad-null>", "https://example.org/null", None),
            ("<urn:uuid:bad-utf8>", "https://example.org/latin1", "café crème".encode("latin-1")),
            ("<urn:uuid:long>", "https://example.org/long", long_text.encode()),
        ]
    folder = workdir / DUMP / "scrubbed"
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        pq.write_table(_table(rows[f::files]), folder / f"part-{f:05d}.parquet")
    (folder / "stats.json").write_text(json.dumps({"stage": "scrubbed"}))
    return folder, docs
