"""The two shapes of a document stage's Spark job, each writing its part files through `PartWriter`:

- `run_per_file`: one Spark task per input file (a WARC file, a Parquet part), which writes one part file
  and returns its statistics; the driver receives only those and merges them;
- `write_partitions`: a DataFrame's partitions, each written as one part file (the dedup stage's survivors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from fineforge.tasks.common.documents import PartWriter, SchemaError, part_file_name
from fineforge.tasks.common.statistics import merge_statistics

log = logging.getLogger(__name__)

# work(file, part_path=..., rank=...) -> that file's statistics
FileWork = Callable[..., dict[str, Any]]


def _per_file_partition(index: int, files: Iterator[str], work: FileWork, output_dir: str) -> Iterator[dict]:
    for file in files:
        try:
            yield work(file, part_path=Path(output_dir) / part_file_name(index), rank=index)
        except SchemaError as e:
            raise SchemaError(f"{file}: {e}") from e


def run_per_file(spark, files: list[str], work: FileWork, output_dir: Path) -> dict[str, Any]:
    """Run `work(file, part_path=..., rank=...)` in one Spark task per file, each writing the part file
    `part-<index>.parquet` of `output_dir` (created); return the merged statistics, with input_files."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    per_file: list[dict[str, Any]] = []
    if files:
        task = partial(_per_file_partition, work=work, output_dir=str(output_dir.resolve()))
        per_file = spark.sparkContext.parallelize(files, numSlices=len(files)).mapPartitionsWithIndex(task).collect()
    return {**merge_statistics(per_file), "input_files": len(files)}


def _write_partition(batches: Iterator, output_dir: str) -> Iterator:
    """mapInArrow: write a partition's rows as the part file named after the partition (none when empty)."""
    import pyarrow as pa
    from pyspark import TaskContext

    writer = None
    try:
        for batch in batches:
            if batch.num_rows:
                writer = writer or PartWriter(Path(output_dir) / part_file_name(TaskContext.get().partitionId()))
                writer.write_batch(batch)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    counts = {"documents_out": writer.rows, "bytes_out": writer.close()} if writer else {}
    yield pa.RecordBatch.from_pydict({"counts": [json.dumps(counts)]})


def write_partitions(frame, output_dir: Path) -> dict[str, int]:
    """Write the rows of a Spark DataFrame as document part files in `output_dir` (created), one per non-empty
    partition, through `PartWriter`; return documents_out, bytes_out and parts."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write = partial(_write_partition, output_dir=str(output_dir.resolve()))
    per_partition = [json.loads(row["counts"]) for row in frame.mapInArrow(write, "counts string").collect()]
    written = [counts for counts in per_partition if counts]
    return {key: sum(counts[key] for counts in written) for key in ("documents_out", "bytes_out")} | {
        "parts": len(written)
    }
