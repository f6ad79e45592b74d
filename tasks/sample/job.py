"""The sample stage on Spark: one task per Parquet part of the sampled stage keeps the rows whose id is kept."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq

from fineforge.tasks.common.documents import PARQUET_BATCH_ROWS, PartWriter
from fineforge.tasks.common.spark_jobs import run_per_file
from fineforge.tasks.common.stage import ConfiguredStage, StageOutput
from fineforge.tasks.sample.config import SAMPLED, SampleConfig
from fineforge.tasks.sample.documents import sample_batch

NOT_SAMPLED = "not_sampled"  # the drop reason in the statistics


def sample_part(path: str, part_path: Path, rank: int, config: SampleConfig) -> dict[str, Any]:
    """Write the kept documents of one Parquet file into `part_path`; return its statistics."""
    documents_in = 0
    with PartWriter(part_path) as writer:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            documents_in += batch.num_rows
            writer.write_batch(sample_batch(batch, config.fraction, config.seed))
    return {"documents_in": documents_in, "documents_out": writer.rows, "bytes_out": writer.bytes,
            "dropped": {NOT_SAMPLED: documents_in - writer.rows}}


@dataclass(frozen=True)
class SampleStage(ConfiguredStage):
    """`<workdir>/<group>/sampled/`: a deterministic fraction of the documents of `inputs`."""

    config: SampleConfig
    inputs: list[StageOutput]
    name: ClassVar[str] = SAMPLED

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        return run_per_file(spark, self.files_to_write(), partial(sample_part, config=self.config), output_dir)
