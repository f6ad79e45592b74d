"""The documents of the data build on disk: one Parquet schema, the one writer that enforces it, and readers.

Every document stage writes part files through `PartWriter` (from rows or from Arrow batches), so every
Parquet file under `<workdir>/<dump>/<stage>/` has exactly `DOCUMENT_SCHEMA`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import Document

# One fixed schema for every document stage (filtered, deduplicated, scrubbed, sampled).
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
TEXT_LENGTH = "text_length"  # derived from the text by the writer, never taken from the input
# Rows buffered before a record batch is written to a part file.
PARQUET_BATCH_ROWS = 512
PARQUET_COMPRESSION = "zstd"
PARQUET_SUFFIX = ".parquet"
_METADATA_COLUMNS = [name for name in DOCUMENT_SCHEMA.names if name not in ("id", "text", TEXT_LENGTH)]


class SchemaError(ValueError):
    """Documents that cannot be written with DOCUMENT_SCHEMA (a required column missing or null, a wrong type)."""


def part_file_name(index: int) -> str:
    """The Parquet part file of task (or partition) `index`."""
    return f"part-{index:05d}{PARQUET_SUFFIX}"


def parquet_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Every Parquet file of the inputs (folders searched recursively, hidden files left out), sorted."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            files.append(path)
        else:
            files += sorted(p for p in path.rglob(f"*{PARQUET_SUFFIX}") if not p.name.startswith("."))
    return files


def check_parquet_inputs(inputs: Iterable[str | Path], columns: Iterable[str]) -> list[Path]:
    """The Parquet files of the inputs, each with `columns`, checked from their footers alone (no data is read);
    SchemaError naming the input or file when there is none, one is not Parquet, or a column is missing."""
    inputs = [str(item) for item in inputs]
    files = parquet_files(inputs)
    if not files:
        raise SchemaError(f"no Parquet files (*{PARQUET_SUFFIX}) in {', '.join(inputs)}")
    for path in files:
        try:
            names = pq.read_schema(path).names
        except (OSError, pa.ArrowException) as e:
            raise SchemaError(f"{path}: not a readable Parquet file ({e})") from e
        missing = [column for column in columns if column not in names]
        if missing:
            raise SchemaError(f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(names)})")
    return files


def hash_below(key: str, fraction: float) -> bool:
    """Whether the sha1 of `key`, read as a number in [0, 1), is below `fraction`: a stable `fraction` share of keys."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


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
    metadata = {key: value for key, value in row.items() if key not in ("id", "text", TEXT_LENGTH)}
    return Document(text=row["text"], id=row["id"], metadata=metadata)


def read_documents(path: Path, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[Document]:
    """Stream the documents of one Parquet file, a batch at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            yield row_document(row)


def conform(batch: pa.RecordBatch, schema: pa.Schema = DOCUMENT_SCHEMA) -> pa.RecordBatch:
    """The rows of `batch` with exactly `schema` (DOCUMENT_SCHEMA, or one that extends it): columns cast to their
    types, missing nullable columns as nulls, other columns left out, text_length computed from the text.
    SchemaError names what does not fit."""
    columns = []
    for field in schema:
        if field.name == TEXT_LENGTH:
            column = pc.cast(pc.utf8_length(columns[schema.get_field_index("text")]), field.type)
        elif field.name in batch.schema.names:
            try:
                column = pc.cast(batch.column(field.name), field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SchemaError(f"column {field.name!r} is not {field.type}: {e}") from e
        elif field.nullable:
            column = pa.nulls(batch.num_rows, field.type)
        else:
            raise SchemaError(f"documents lack the column {field.name!r} (columns: {batch.schema.names})")
        if not field.nullable and column.null_count:
            raise SchemaError(f"column {field.name!r} holds {column.null_count} nulls")
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class PartWriter:
    """Writes documents into one Parquet part file with DOCUMENT_SCHEMA (`conform`), from rows or Arrow batches;
    a stage that adds columns (the quality score) passes a schema that extends DOCUMENT_SCHEMA.

    The file is written under a hidden temporary name and renamed into place by `close()`, so a part file
    exists only complete; it exists even when no row was written, so every task leaves a part. After an
    error inside `with`, the temporary file is removed.
    """

    def __init__(self, path: Path, batch_rows: int = PARQUET_BATCH_ROWS, schema: pa.Schema = DOCUMENT_SCHEMA):
        self.path = Path(path)
        self.batch_rows = batch_rows
        self.schema = schema
        self.rows = 0
        self.bytes = 0
        self._buffer: list[dict[str, Any]] = []
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, schema, compression=PARQUET_COMPRESSION)

    def write(self, row: dict[str, Any]) -> None:
        """Buffer one row (a dict of DOCUMENT_SCHEMA's columns); written a batch at a time."""
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_rows:
            self._flush()

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Write Arrow rows (after the buffered ones)."""
        self._flush()
        if batch.num_rows:
            self._writer.write_batch(conform(batch, self.schema))
            self.rows += batch.num_rows

    def _flush(self) -> None:
        if self._buffer:
            rows, self._buffer = self._buffer, []
            self.write_batch(pa.RecordBatch.from_pylist(rows, schema=self.schema))

    def close(self) -> int:
        """Flush, close, rename into place, and return the file's size in bytes."""
        self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)
        self.bytes = self.path.stat().st_size
        return self.bytes

    def abort(self) -> None:
        """Close and remove the unfinished file."""
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
