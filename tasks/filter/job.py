"""Spark job: WARC files -> extracted and filtered documents in Parquet (one Spark task per WARC file).

Each task streams its WARC file through `iter_html_documents` and the datatrove steps of
`build_filter_steps`, writes its own Parquet part file in batches, and returns only statistics.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from fineforge.tasks.common.datatrove_steps import (
    dropped_by_reason,
    merge_step_statistics,
    pipeline_statistics,
    run_steps,
)
from fineforge.tasks.common.documents import PartWriter, document_row
from fineforge.tasks.common.stage import merge_counts
from fineforge.tasks.filter.config import FilterConfig, build_filter_steps, step_name
from fineforge.tasks.filter.extraction_ahead import DEFAULT_AHEAD

log = logging.getLogger(__name__)

# Reader counts that are drops of damaged input (the rest of the reader's counts are kept under "reader").
READER_DAMAGE = ("corrupt_record", "unreadable_file")
# Documents the extraction process may run ahead of the other steps (see tasks.extraction_ahead).
EXTRACT_AHEAD = DEFAULT_AHEAD


def part_file_name(index: int) -> str:
    """The Parquet part file of task `index`."""
    return f"part-{index:05d}.parquet"


def _counted(documents: Iterable, counter: Counter, key: str) -> Iterator:
    for document in documents:
        counter[key] += 1
        yield document


def filter_warc(uri: str, config: FilterConfig, part_path: Path, dump: str, rank: int = 0) -> dict[str, Any]:
    """Stream one WARC file through the filter steps into `part_path`; return this file's statistics."""
    from fineforge.tasks.filter.warc_records import iter_html_documents

    started = time.time()
    reader_counts: Counter = Counter()
    steps = build_filter_steps(config)
    documents = _counted(iter_html_documents(uri, reader_counts, config.remote), reader_counts, "documents_in")
    with PartWriter(part_path) as writer:
        for document in run_steps(steps, documents, rank=rank, extract_ahead=EXTRACT_AHEAD):
            writer.write(document_row(document, dump))
    bytes_out = part_path.stat().st_size
    documents_in = reader_counts.pop("documents_in", 0)
    log.info("%s: %d documents in, %d out (%.1fs)", uri, documents_in, writer.rows, time.time() - started)
    return {
        "documents_in": documents_in,
        "documents_out": writer.rows,
        "bytes_out": bytes_out,
        "reader": dict(reader_counts),
        "steps": pipeline_statistics(steps, step_name),
    }


def _filter_partition(index: int, uris: Iterator[str], config: FilterConfig, output_dir: str, dump: str):
    for uri in uris:
        yield filter_warc(uri, config, Path(output_dir) / part_file_name(index), dump, rank=index)


def merge_filter_statistics(per_file: list[dict[str, Any]]) -> dict[str, Any]:
    """The stage's statistics from the per-file ones."""
    steps = merge_step_statistics(task["steps"] for task in per_file)
    reader = merge_counts(task["reader"] for task in per_file)
    dropped = dropped_by_reason(steps)
    dropped.update({reason: reader[reason] for reason in READER_DAMAGE if reader.get(reason)})
    return {
        "documents_in": sum(task["documents_in"] for task in per_file),
        "documents_out": sum(task["documents_out"] for task in per_file),
        "dropped": dropped,
        "steps": steps,
        "bytes_out": sum(task["bytes_out"] for task in per_file),
        "warc_files": len(per_file),
        "reader": reader,
    }


def filter_warcs_to_parquet(spark, warc_uris: list[str], config: FilterConfig, output_dir: Path, dump: str) -> dict:
    """Extract and filter `warc_uris` into Parquet part files under `output_dir` (created); return statistics.

    One Spark task per WARC file; the driver only receives and merges each task's statistics.
    Statistics: documents_in (HTML documents read), documents_out, dropped {"<step>/<reason>": n, plus
    corrupt_record and unreadable_file}, steps [per-step counts in pipeline order], bytes_out, warc_files,
    reader {the WARC reader's record counts}.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    uris = list(warc_uris)
    if not uris:
        return merge_filter_statistics([])
    concurrent = min(len(uris), spark.sparkContext.defaultParallelism)
    config = config.model_copy(update={"remote": config.remote.task_share(concurrent)})  # the run's rate, shared
    task = partial(_filter_partition, config=config, output_dir=str(output_dir.resolve()), dump=dump)
    rdd = spark.sparkContext.parallelize(uris, numSlices=len(uris))
    per_file = rdd.mapPartitionsWithIndex(task).collect()
    stats = merge_filter_statistics(per_file)
    log.info(
        "filtered %d WARC files: %d of %d documents kept", len(uris), stats["documents_out"], stats["documents_in"]
    )
    return stats
