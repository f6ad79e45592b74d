"""The one config of the data build flow (rendered by Prefect as the run form).

Its validators do every check that needs no work, so the CLI, a Prefect UI run, a schedule and the API fail
alike, before anything is written, with one message naming the field: the input spec resolves to WARC files
(a dump name, a dump spec such as `latest`, or a URL at a remote source is resolved by the flow's first task
instead, as that needs the network; the config keeps the spec, so each run resolves it anew), limit and sample
exclude each other, the languages are labels of the language-ID model (in
`FilterConfig`), and a sample is taken of a stage the build writes.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fineforge.tasks.common.object_store import usable_work_dir
from fineforge.tasks.common.spark import SparkConfig
from fineforge.tasks.dedup.config import DEDUPLICATED, DedupConfig
from fineforge.tasks.filter.config import FILTERED, FilterConfig
from fineforge.tasks.filter.warc_input import InputError, needs_network, resolve_warc_inputs
from fineforge.tasks.sample.config import SampleConfig
from fineforge.tasks.scrub.config import SCRUBBED, ScrubConfig


class DataBuildConfig(BaseModel):
    """Where the WARCs come from, what to keep, and where it runs."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(
        description="A folder or glob of WARC files, a text file listing WARC paths/URLs, a CommonCrawl dump name "
        "such as CC-MAIN-2024-22, or a dump spec resolved when the build runs: latest, or a pattern like CC-MAIN-*."
    )
    since: date | None = Field(None, description="With a dump spec: only dumps crawled on or after this date.")
    workdir: str = Field("work", description="Output root, a folder or s3://bucket/prefix: each stage writes "
                         "WORKDIR/DUMP/STAGE/.")
    dump: str = Field("local", description="Dump name for inputs whose path names none.")
    limit: PositiveInt | None = Field(None, description="Only the first N WARC files.")
    sample: PositiveInt | None = Field(None, description="A random sample of N WARC files.")
    seed: int = Field(0, description="Seed of the random sample.")
    source: str = Field(
        "https://data.commoncrawl.org",
        description="Where a dump's warc.paths.gz and WARCs are read: https://data.commoncrawl.org or s3://commoncrawl.",
    )
    filters: FilterConfig = Field(default_factory=FilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    sample_documents: SampleConfig | None = Field(
        None, title="Sample documents",
        description="Also keep a deterministic fraction of a stage's documents in WORKDIR/DUMP/sampled/."
    )
    spark: SparkConfig = Field(default_factory=SparkConfig)
    incremental: bool = Field(
        True, description="On a rebuild, process only the WARC files not processed yet and append their output "
        "(deduplicated against the earlier output); false: redo a dump whose inputs changed."
    )
    mlflow: bool = Field(True, description="Track the build as an MLflow run.")
    mlflow_tracking_uri: str | None = Field(
        None, description="Defaults to $MLFLOW_TRACKING_URI, else a SQLite file in the work dir."
    )
    mlflow_experiment: str = "fineforge-data-build"

    def stages(self) -> list[str]:
        """The document stages this build writes per dump, in order."""
        return [FILTERED, *([DEDUPLICATED] if self.dedup.active else []), SCRUBBED]

    @field_validator("workdir", mode="before")
    @classmethod
    def _workdir_usable(cls, value: Any) -> str:
        return usable_work_dir(value)

    @model_validator(mode="after")
    def _input_resolves(self) -> DataBuildConfig:
        if self.limit is not None and self.sample is not None:
            raise PydanticCustomError("input", "give either limit or sample, not both")
        if not needs_network(self.input, self.source):
            try:
                resolve_warc_inputs(self.input, limit=self.limit, sample=self.sample, seed=self.seed,
                                    source=self.source, since=self.since)
            except InputError as e:
                raise PydanticCustomError("input", str(e)) from e
        return self

    @model_validator(mode="after")
    def _sampled_stage_is_built(self) -> DataBuildConfig:
        if self.sample_documents is not None and self.sample_documents.input not in self.stages():
            raise PydanticCustomError(
                "sample_input", f"sample_documents.input: {self.sample_documents.input!r} is not a stage of this "
                f"build ({', '.join(self.stages())})"
            )
        return self
