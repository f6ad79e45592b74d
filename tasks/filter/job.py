"""The filter stage on Spark: WARC files -> extracted and filtered documents (one Spark task per WARC file).

Each task streams its WARC file through `iter_html_documents` and the datatrove steps of
`build_filter_steps`, writes its own Parquet part file in batches, and returns only statistics.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from fineforge.tasks.common.datatrove_steps import dropped_by_reason, pipeline_statistics, run_steps
from fineforge.tasks.common.documents import PartWriter, document_row
from fineforge.tasks.common.spark_jobs import run_per_file
from fineforge.tasks.common.stage import ConfiguredStage
from fineforge.tasks.filter.config import FILTERED, FilterConfig, build_filter_steps
from fineforge.tasks.filter.extraction import cpu_time_counts, cpu_time_summary
from fineforge.tasks.filter.extraction_ahead import DEFAULT_AHEAD

log = logging.getLogger(__name__)

# Reader counts that are drops of damaged input (the rest of the reader's counts are kept under "reader").
READER_DAMAGE = ("corrupt_record", "unreadable_file")
# Documents the extraction process may run ahead of the other steps (see tasks.extraction_ahead).
EXTRACT_AHEAD = DEFAULT_AHEAD


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
    documents_in = reader_counts.pop("documents_in", 0)
    log.info("%s: %d documents in, %d out (%.1fs)", uri, documents_in, writer.rows, time.time() - started)
    statistics = pipeline_statistics(steps)
    damage = {reason: reader_counts[reason] for reason in READER_DAMAGE if reader_counts.get(reason)}
    return {
        "documents_in": documents_in,
        "documents_out": writer.rows,
        "dropped": dropped_by_reason(statistics) | damage,
        "bytes_out": writer.bytes,
        "reader": dict(reader_counts),
        "steps": statistics,
        "extraction_cpu": cpu_time_counts(steps),
    }


def filter_warcs_to_parquet(spark, warc_uris: list[str], config: FilterConfig, output_dir: Path, dump: str) -> dict:
    """Extract and filter `warc_uris` into Parquet part files under `output_dir` (created); return statistics.

    One Spark task per WARC file; the driver only receives and merges each task's statistics.
    Statistics: documents_in (HTML documents read), documents_out, dropped {"<step>/<reason>": n, plus
    corrupt_record and unreadable_file}, steps [per-step counts in pipeline order], bytes_out, input_files,
    reader {the WARC reader's record counts}, extraction_cpu {pages, over_budget, p50_ms, p99_ms, histogram:
    CPU time of extraction per page - measured, so it varies between runs; everything else does not}.
    """
    uris = list(warc_uris)
    concurrent = max(1, min(len(uris), spark.sparkContext.defaultParallelism))
    config = config.model_copy(update={"remote": config.remote.task_share(concurrent)})  # the run's rate, shared
    stats = run_per_file(spark, uris, partial(filter_warc, config=config, dump=dump), output_dir)
    stats["extraction_cpu"] = cpu_time_summary([stats.get("extraction_cpu", {})], stats.get("steps", []))
    log.info("filtered %d WARC files: %d of %d documents kept", len(uris), stats["documents_out"],
             stats["documents_in"])
    return stats


@dataclass(frozen=True)
class FilterStage(ConfiguredStage):
    """`<workdir>/<dump>/filtered/`: the documents of the WARC files `inputs` that pass the FineWeb filters."""

    config: FilterConfig
    inputs: list[str]
    name: ClassVar[str] = FILTERED

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        return filter_warcs_to_parquet(spark, self.files_to_write(), self.config, output_dir, self.group)
