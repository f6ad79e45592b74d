"""The Parquet schema of the data build's documents, and a part-file writer that streams in batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document

# One fixed schema for every document stage (filtered, scrubbed, ...).
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False, metadata={"doc": "WARC-Record-ID of the response"}),
        pa.field("text", pa.string(), nullable=False, metadata={"doc": "extracted, filtered main text"}),
        pa.field("url", pa.string(), metadata={"doc": "WARC-Target-URI"}),
        pa.field("dump", pa.string(), metadata={"doc": "CommonCrawl dump, e.g. CC-MAIN-2024-22"}),
        pa.field("warc_file", pa.string(), metadata={"doc": "the WARC file the record came from"}),
        pa.field("warc_offset", pa.int64(), metadata={"doc": "byte offset of the record in the WARC file"}),
        pa.field("crawl_date", pa.string(), metadata={"doc": "WARC-Date (ISO 8601)"}),
        pa.field("language", pa.string(), metadata={"doc": "top fastText language (null if not identified)"}),
        pa.field("language_score", pa.float64(), metadata={"doc": "fastText score of that language"}),
        pa.field("content_type", pa.string(), metadata={"doc": "HTTP Content-Type of the response"}),
        pa.field("text_length", pa.int64(), metadata={"doc": "characters of text"}),
    ]
)
# Rows buffered before a record batch is written to a part file.
PARQUET_BATCH_ROWS = 512
PARQUET_COMPRESSION = "zstd"
_METADATA_COLUMNS = [name for name in DOCUMENT_SCHEMA.names if name not in ("id", "text", "text_length")]


def document_row(document: Document, dump: str | None = None) -> dict[str, Any]:
    """A datatrove Document as a row of DOCUMENT_SCHEMA (missing metadata become nulls)."""
    metadata = document.metadata
    row = {name: metadata.get(name) for name in _METADATA_COLUMNS}
    if dump is not None:
        row["dump"] = dump
    if row["warc_offset"] is not None:
        row["warc_offset"] = int(row["warc_offset"])
    if row["language_score"] is not None:
        row["language_score"] = float(row["language_score"])
    row.update(id=str(document.id), text=document.text, text_length=len(document.text))
    return row


def row_document(row: Mapping[str, Any]) -> Document:
    """A row of DOCUMENT_SCHEMA as a datatrove Document (metadata = every other column)."""
    metadata = {key: value for key, value in row.items() if key not in ("id", "text", "text_length")}
    return Document(text=row["text"], id=row["id"], metadata=metadata)


def read_documents(path: Path, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[Document]:
    """Stream the documents of one Parquet file, a batch at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            yield row_document(row)


class PartWriter:
    """Writes rows of DOCUMENT_SCHEMA into one Parquet part file, a record batch at a time.

    The file always exists after `close()`, empty when no row was written, so every task leaves a part.
    """

    def __init__(self, path: Path, batch_rows: int = PARQUET_BATCH_ROWS):
        self.path = Path(path)
        self.batch_rows = batch_rows
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(self.path, DOCUMENT_SCHEMA, compression=PARQUET_COMPRESSION)

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_batch(pa.RecordBatch.from_pylist(self._buffer, schema=DOCUMENT_SCHEMA))
            self.rows += len(self._buffer)
            self._buffer = []

    def close(self) -> int:
        """Flush, close, and return the file's size in bytes."""
        self._flush()
        self._writer.close()
        return self.path.stat().st_size

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
