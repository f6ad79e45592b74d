"""The scrub stage on Spark: documents -> the same documents with e-mails and public IP addresses replaced.

One Spark task per input part file; each streams its file in batches through datatrove's `PIIFormatter`
(from `build_scrub_steps`) and writes a part file of the same schema.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document

from fineforge.tasks.common.datatrove_steps import dropped_by_reason, pipeline_statistics, run_steps
from fineforge.tasks.common.documents import PartWriter, document_row, parquet_files, read_documents
from fineforge.tasks.common.spark_jobs import run_per_file
from fineforge.tasks.common.stage import ConfiguredStage, StageOutput
from fineforge.tasks.scrub.config import SCRUBBED, ScrubConfig, build_scrub_steps

log = logging.getLogger(__name__)

# Metadata key holding a document's text before the scrub (not a column of the output).
_ORIGINAL_TEXT = "_text_before_scrub"


def _with_original_text(documents: Iterator[Document]) -> Iterator[Document]:
    for document in documents:
        document.metadata[_ORIGINAL_TEXT] = document.text
        yield document


def scrub_part(input_path: str, config: ScrubConfig, part_path: Path, rank: int = 0) -> dict[str, Any]:
    """Scrub one Parquet part file into `part_path`; return its statistics."""
    steps = build_scrub_steps(config)
    documents_in = 0
    changed = 0
    with PartWriter(part_path) as writer:
        for document in run_steps(steps, _with_original_text(read_documents(Path(input_path))), rank=rank):
            documents_in += 1
            changed += document.text != document.metadata.pop(_ORIGINAL_TEXT)
            writer.write(document_row(document))
    statistics = pipeline_statistics(steps)
    return {
        "documents_in": documents_in,
        "documents_changed": changed,
        "documents_out": writer.rows,
        "dropped": dropped_by_reason(statistics),
        "bytes_out": writer.bytes,
        "steps": statistics,
    }


def scrub_parquet(spark, input_dir: Path, config: ScrubConfig, output_dir: Path) -> dict:
    """Apply the PII scrub to every Parquet part of `input_dir`, writing one part each into `output_dir`.

    Statistics have the filter stage's shape: documents_in, documents_out, dropped, steps, bytes_out,
    input_files, plus documents_changed (texts the scrub altered).
    """
    if not Path(input_dir).is_dir():
        raise FileNotFoundError(f"scrub input folder not found: {input_dir}")
    return scrub_parts(spark, [str(path.resolve()) for path in parquet_files([input_dir])], config, output_dir)


def scrub_parts(spark, parts: list[str], config: ScrubConfig, output_dir: Path) -> dict:
    """Apply the PII scrub to the Parquet files `parts`, one part each into `output_dir`; return the statistics."""
    stats = run_per_file(spark, parts, partial(scrub_part, config=config), output_dir)
    log.info("scrubbed %d parts: %d documents", len(parts), stats["documents_out"])
    return stats


@dataclass(frozen=True)
class ScrubStage(ConfiguredStage):
    """`<workdir>/<group>/scrubbed/`: the documents of `inputs` (one stage output) with personal data replaced."""

    config: ScrubConfig
    inputs: list[StageOutput]
    name: ClassVar[str] = SCRUBBED

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        return scrub_parts(spark, self.files_to_write(), self.config, output_dir)
