"""The one config of the data build flow (rendered by Prefect as the run form)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from fineforge.tasks.common.spark import SparkConfig
from fineforge.tasks.dedup.job import DedupConfig
from fineforge.tasks.filter.config import FilterConfig


class DataBuildConfig(BaseModel):
    """Where the WARCs come from, what to keep, and where it runs."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(
        description="A folder or glob of WARC files, a text file listing WARC paths/URLs, "
        "or a CommonCrawl dump name such as CC-MAIN-2024-22."
    )
    workdir: Path = Field(Path("work"), description="Output root: each stage writes WORKDIR/DUMP/STAGE/.")
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
    spark: SparkConfig = Field(default_factory=SparkConfig)
    mlflow: bool = Field(True, description="Track the build as an MLflow run.")
    mlflow_tracking_uri: str | None = Field(
        None, description="Defaults to $MLFLOW_TRACKING_URI, else a SQLite file in the work dir."
    )
    mlflow_experiment: str = "fineforge-data-build"
