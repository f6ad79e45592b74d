"""The tokens stage's input cut into slices: contiguous row ranges of the Parquet files, of about equal text bytes.

The slices in order cover every row of every file in order, so part files concatenated in slice order hold
the documents in input order, whatever the number of slices or cores. Planning reads only the Parquet
footers (the text column's uncompressed bytes per row group, spread evenly over its rows); each Spark
task then reads its slice with pyarrow, straight from the file, with no JVM in between.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 1024  # rows tokenized at a time


@dataclass(frozen=True)
class Slice:
    """Rows [start, stop) of one Parquet file."""

    file: str
    start: int
    stop: int


def _row_group_sizes(metadata: pq.FileMetaData, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows and uncompressed bytes of `column` per row group."""
    index = metadata.schema.names.index(column)
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    rows = np.array([g.num_rows for g in groups], dtype=np.int64)
    sizes = np.array([g.column(index).total_uncompressed_size for g in groups], dtype=np.float64)
    return rows, sizes


def check_columns(files: list[Path], columns: list[str]) -> None:
    """A clear error naming the file when one lacks a column (read from the footers only)."""
    for file in files:
        names = pq.read_schema(file).names
        for column in columns:
            if column not in names:
                raise ValueError(f"input {file} has no column {column!r} (columns: {names})")


def file_slices(file: Path, text_column: str, count: int) -> list[Slice]:
    """At most `count` slices of one file, cut where its estimated text bytes reach equal shares."""
    rows, sizes = _row_group_sizes(pq.ParquetFile(file).metadata, text_column)
    total_rows = int(rows.sum())
    if not total_rows:
        return []
    row_edges = np.concatenate([[0], np.cumsum(rows)])
    byte_edges = np.concatenate([[0.0], np.cumsum(sizes + 1.0)])  # + 1: never flat, so interp is defined
    shares = np.linspace(0.0, byte_edges[-1], count + 1)[1:-1]
    cuts = np.interp(shares, byte_edges, row_edges).round().astype(np.int64)
    bounds = np.unique(np.concatenate([[0], cuts, [total_rows]]))
    return [Slice(str(file), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def plan_slices(files: list[Path], text_column: str, count: int) -> list[Slice]:
    """About `count` slices over `files` in order; each file gets a share by its text bytes, at least one."""
    sizes = [_row_group_sizes(pq.ParquetFile(f).metadata, text_column)[1].sum() for f in files]
    total = sum(sizes) or 1.0
    slices: list[Slice] = []
    for file, size in zip(files, sizes, strict=True):
        slices.extend(file_slices(file, text_column, max(1, round(count * size / total))))
    return slices


def read_slice(piece: Slice, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The rows of a slice, `columns` only, in record batches of at most `batch_rows`."""
    parquet = pq.ParquetFile(piece.file)
    rows, _ = _row_group_sizes(parquet.metadata, columns[-1])
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]])
    groups = [i for i, (a, n) in enumerate(zip(starts, rows, strict=True)) if a < piece.stop and a + n > piece.start]
    if not groups:
        return
    table = parquet.read_row_groups(groups, columns=columns)
    first = int(starts[groups[0]])
    yield from table.slice(piece.start - first, piece.stop - piece.start).to_batches(max_chunksize=batch_rows)
