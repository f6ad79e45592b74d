"""Prefect tasks of the data build: input resolution and one task per Spark stage.

Each stage task goes through the stage contract (`tasks.stage.run_stage`): output written atomically
under `<workdir>/<dump>/<stage>/`, skipped when complete for the same inputs and config.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from fineforge.tasks.common.spark import SparkConfig, SparkProgress, spark_session
from fineforge.tasks.common.stage import DEDUPLICATED, FILTERED, SCRUBBED, file_identity, run_stage
from fineforge.tasks.common.tracking import record_stage_run
from fineforge.tasks.dedup.job import DedupConfig, deduplicate_parquet
from fineforge.tasks.filter.config import FilterConfig
from fineforge.tasks.filter.job import filter_warcs_to_parquet
from fineforge.tasks.filter.warc_input import dump_of, resolve_warc_inputs
from fineforge.tasks.scrub.job import scrub_parquet

log = logging.getLogger(__name__)

ALL_DUMPS = "all-dumps"  # the output group of a deduplication across dumps


def group_by_dump(uris: list[str], default_dump: str) -> dict[str, list[str]]:
    """WARC URIs grouped by the CommonCrawl dump their path names (else the default dump)."""
    groups: dict[str, list[str]] = {}
    for uri in uris:
        groups.setdefault(dump_of(uri, default_dump), []).append(uri)
    return groups


@task(name="resolve-warc-inputs", cache_policy=NO_CACHE)
def resolve_inputs(
    spec: str, limit: int | None, sample: int | None, seed: int, source: str, default_dump: str
) -> dict[str, list[str]]:
    """Resolve the input spec to WARC URIs, grouped by dump."""
    uris = resolve_warc_inputs(spec, limit=limit, sample=sample, seed=seed, source=source)
    groups = group_by_dump(uris, default_dump)
    for dump, group in groups.items():
        log.info("dump %s: %d WARC files", dump, len(group))
    return groups


@task(name="filter", task_run_name="filter-{dump}", cache_policy=NO_CACHE)
def filter_stage(spark_config: SparkConfig, filters: FilterConfig, uris: list[str], workdir: Path, dump: str) -> dict:
    """WARC files -> extracted, filtered documents (`<workdir>/<dump>/filtered/`)."""
    spark = spark_session(spark_config)

    def work(output_dir: Path) -> dict:
        with SparkProgress(spark, f"{dump}/{FILTERED}"):
            return filter_warcs_to_parquet(spark, uris, filters, output_dir, dump)

    return run_stage(workdir, dump, FILTERED, [file_identity(uris), filters.model_dump(mode="json")], work)


@task(name="deduplicate", task_run_name="deduplicate-{group}", cache_policy=NO_CACHE)
def dedup_stage(
    spark_config: SparkConfig, dedup: DedupConfig, upstream: list[dict], workdir: Path, group: str
) -> dict:
    """Filtered documents of one dump (or of all, scope "all") -> deduplicated (`<workdir>/<group>/deduplicated/`)."""
    spark = spark_session(spark_config)
    input_dirs = [Path(workdir) / stats["dump"] / stats["stage"] for stats in upstream]

    def work(output_dir: Path) -> dict:
        with SparkProgress(spark, f"{group}/{DEDUPLICATED}"):
            return deduplicate_parquet(spark, input_dirs, dedup, output_dir)

    parts = [[stats["fingerprint"] for stats in upstream], dedup.model_dump(mode="json")]
    return run_stage(workdir, group, DEDUPLICATED, parts, work)


@task(name="scrub", task_run_name="scrub-{dump}", cache_policy=NO_CACHE)
def scrub_stage(spark_config: SparkConfig, filters: FilterConfig, upstream: dict, workdir: Path, dump: str) -> dict:
    """Documents -> documents with e-mails and public IP addresses scrubbed (`<workdir>/<dump>/scrubbed/`)."""
    spark = spark_session(spark_config)
    input_dir = Path(workdir) / upstream["dump"] / upstream["stage"]

    def work(output_dir: Path) -> dict:
        with SparkProgress(spark, f"{dump}/{SCRUBBED}"):
            return scrub_parquet(spark, input_dir, filters, output_dir)

    parts = [upstream["fingerprint"], filters.model_dump(mode="json")]
    return run_stage(workdir, dump, SCRUBBED, parts, work)


@task(name="track-in-mlflow", cache_policy=NO_CACHE)
def track_build(tracking_uri: str, experiment: str, config: dict, stages: list[dict], workdir: Path) -> str:
    """Record the build in MLflow: config as params, statistics as metrics, stats.json files as artifacts."""
    files = [Path(workdir) / s["dump"] / s["stage"] / "stats.json" for s in stages]
    run_name = "data_build " + ", ".join(sorted({s["dump"] for s in stages}))
    return record_stage_run(tracking_uri, experiment, run_name, config, stages, files)
