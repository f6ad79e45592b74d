"""Spark job: documents in Parquet -> the same documents with e-mails and public IP addresses scrubbed.

One Spark task per input part file; each streams its file in batches through datatrove's `PIIFormatter`
(from `build_scrub_steps`) and writes a part file of the same schema.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from datatrove.data import Document

from fineforge.tasks.common.datatrove_steps import (
    dropped_by_reason,
    merge_step_statistics,
    pipeline_statistics,
    run_steps,
)
from fineforge.tasks.common.documents import PartWriter, document_row, read_documents
from fineforge.tasks.filter.config import FilterConfig, build_scrub_steps, step_name

log = logging.getLogger(__name__)


# Metadata key holding a document's text before the scrub (not a column of the output).
_ORIGINAL_TEXT = "_text_before_scrub"


def _with_original_text(documents: Iterator[Document]) -> Iterator[Document]:
    for document in documents:
        document.metadata[_ORIGINAL_TEXT] = document.text
        yield document


def scrub_part(input_path: Path, config: FilterConfig, output_path: Path, rank: int = 0) -> dict[str, Any]:
    """Scrub one Parquet part file into `output_path`; return its statistics."""
    steps = build_scrub_steps(config)
    documents_in = 0
    changed = 0
    with PartWriter(output_path) as writer:
        for document in run_steps(steps, _with_original_text(read_documents(input_path)), rank=rank):
            documents_in += 1
            changed += document.text != document.metadata.pop(_ORIGINAL_TEXT)
            writer.write(document_row(document))
    return {
        "documents_in": documents_in,
        "documents_changed": changed,
        "documents_out": writer.rows,
        "bytes_out": output_path.stat().st_size,
        "steps": pipeline_statistics(steps, step_name),
    }


def _scrub_partition(index: int, paths: Iterator[str], config: FilterConfig, output_dir: str):
    for path in paths:
        yield scrub_part(Path(path), config, Path(output_dir) / Path(path).name, rank=index)


def scrub_parquet(spark, input_dir: Path, config: FilterConfig, output_dir: Path) -> dict:
    """Apply the PII scrub to every `*.parquet` part of `input_dir`, writing the same parts into `output_dir`.

    Statistics have the filter stage's shape: documents_in, documents_out, dropped, steps, bytes_out,
    plus documents_changed (texts the scrub altered) and input_files.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"scrub input folder not found: {input_dir}")
    parts = sorted(str(path.resolve()) for path in input_dir.glob("*.parquet"))
    output_dir.mkdir(parents=True, exist_ok=True)
    per_part: list[dict[str, Any]] = []
    if parts:
        task = partial(_scrub_partition, config=config, output_dir=str(output_dir.resolve()))
        per_part = spark.sparkContext.parallelize(parts, numSlices=len(parts)).mapPartitionsWithIndex(task).collect()
    steps = merge_step_statistics(part["steps"] for part in per_part)
    stats = {
        "documents_in": sum(part["documents_in"] for part in per_part),
        "documents_out": sum(part["documents_out"] for part in per_part),
        "dropped": dropped_by_reason(steps),
        "steps": steps,
        "documents_changed": sum(part["documents_changed"] for part in per_part),
        "bytes_out": sum(part["bytes_out"] for part in per_part),
        "input_files": len(parts),
    }
    log.info("scrubbed %d parts: %d documents", len(parts), stats["documents_out"])
    return stats
