"""The filter stage on Spark: WARC files -> extracted and filtered documents (one Spark task per WARC file, or
per byte range of a large one: `warc_ranges`).

Each task streams its WARC file (range) through `iter_html_documents` and the datatrove steps of
`build_filter_steps`, writes its own Parquet part file in batches, and returns only statistics. The ranges of
a file are consecutive tasks, so their part files hold its documents in file order.
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
from fineforge.tasks.filter.block_lists import prepare_block_lists
from fineforge.tasks.filter.config import FILTERED, FilterConfig, build_filter_steps
from fineforge.tasks.filter.extraction import cpu_time_counts, cpu_time_summary
from fineforge.tasks.filter.extraction_ahead import DEFAULT_AHEAD
from fineforge.tasks.filter.warc_ranges import WarcRange, split_warcs

log = logging.getLogger(__name__)

# Reader counts that are drops of damaged input (the rest of the reader's counts are kept under "reader").
READER_DAMAGE = ("corrupt_record", "unreadable_file", "unreadable_range")
# Documents the extraction process may run ahead of the other steps (see tasks.extraction_ahead).
EXTRACT_AHEAD = DEFAULT_AHEAD


def _counted(documents: Iterable, counter: Counter, key: str) -> Iterator:
    for document in documents:
        counter[key] += 1
        yield document


def filter_warc(warc: WarcRange | str, config: FilterConfig, part_path: Path, dump: str,
                rank: int = 0) -> dict[str, Any]:  # fmt: skip
    """Stream one WARC file (or byte range of one) through the filter steps into `part_path`; return its
    statistics."""
    from fineforge.tasks.filter.warc_records import iter_html_documents

    warc = WarcRange(warc) if isinstance(warc, str) else warc
    started = time.time()
    reader_counts: Counter = Counter()
    steps = build_filter_steps(config)
    read = iter_html_documents(warc.uri, reader_counts, config.remote, warc.start, warc.end, config.html_records)
    documents = _counted(read, reader_counts, "documents_in")
    with PartWriter(part_path) as writer:
        for document in run_steps(steps, documents, rank=rank, extract_ahead=EXTRACT_AHEAD):
            writer.write(document_row(document, dump))
    documents_in = reader_counts.pop("documents_in", 0)
    log.info("%s: %d documents in, %d out (%.1fs)", warc, documents_in, writer.rows, time.time() - started)
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

    One Spark task per WARC file, or per range of `config.splitting_range_bytes()` of a larger gzip WARC file
    (the same documents in the same order, the same statistics); the driver only receives and merges each
    task's statistics.
    Statistics: documents_in (HTML documents read), documents_out, dropped {"<step>/<reason>": n, plus
    corrupt_record and unreadable_file}, steps [per-step counts in pipeline order], bytes_out, input_files,
    reader {the WARC reader's record counts}, extraction_cpu {pages, over_budget, p50_ms, p99_ms, histogram:
    CPU time of extraction per page - measured, so it varies between runs; everything else does not}.
    """
    uris = list(warc_uris)
    range_bytes = config.splitting_range_bytes()
    if range_bytes is None and config.warc_range_bytes is not None:
        log.info("WARC files are not split: trafilatura's duplicate-segment removal (extraction.deduplicate) "
                 "carries state from page to page")
    if config.url_filter.enabled:
        prepare_block_lists()  # here, once per machine, rather than by the first workers at once
    ranges = split_warcs(spark, uris, range_bytes, config.remote) if uris else []
    if len(ranges) > len(uris):
        log.info("%d WARC files read as %d ranges of up to %d bytes", len(uris), len(ranges), range_bytes)
    concurrent = max(1, min(len(ranges), spark.sparkContext.defaultParallelism))
    config = config.model_copy(update={"remote": config.remote.task_share(concurrent)})  # the run's rate, shared
    stats = run_per_file(spark, ranges, partial(filter_warc, config=config, dump=dump), output_dir)
    stats["input_files"] = len(uris)
    stats["extraction_cpu"] = cpu_time_summary([stats.get("extraction_cpu", {})], stats.get("steps", []))
    log.info("filtered %d WARC files: %d of %d documents kept", len(uris), stats["documents_out"],
             stats["documents_in"])
    return stats


class NoDocumentsKept(RuntimeError):
    """A dump's WARC files gave no document: all unreadable, or every document dropped (e.g. by the language)."""


def no_documents_reason(statistics: dict[str, Any], dump: str) -> str:
    """Why a filter run kept nothing, from its statistics: nothing readable in the inputs, else the drops."""
    files, dropped = statistics.get("input_files", 0), statistics["dropped"]
    if statistics["documents_in"] == 0:
        damage = ", ".join(f"{reason}={dropped[reason]}" for reason in READER_DAMAGE if dropped.get(reason))
        return (f"{dump}: no document read from {files} input files ({damage or 'no HTML response in them'}); "
                "the log names each file's error")
    drops = ", ".join(f"{reason}={count}" for reason, count in sorted(dropped.items(), key=lambda item: -item[1]))
    return (f"{dump}: no document kept of {statistics['documents_in']} read from {files} files (dropped: {drops}); "
            "check the filter settings, e.g. filters.language")


@dataclass(frozen=True)
class FilterStage(ConfiguredStage):
    """`<workdir>/<dump>/filtered/`: the documents of the WARC files `inputs` that pass the FineWeb filters.

    A whole run that keeps no document fails (NoDocumentsKept, nothing written): there is nothing to build on.
    An increment (`only`: the new WARC files of a rebuild) that keeps none appends nothing."""

    config: FilterConfig
    inputs: list[str]
    name: ClassVar[str] = FILTERED
    execution_fields: ClassVar[frozenset[str]] = frozenset({"warc_range_bytes"})

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        statistics = filter_warcs_to_parquet(spark, self.files_to_write(), self.config, output_dir, self.group)
        if statistics["documents_out"] == 0 and self.only is None:  # an increment may add nothing to the output
            raise NoDocumentsKept(no_documents_reason(statistics, self.group))
        return statistics
