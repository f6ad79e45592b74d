"""The `data_build` flow: CommonCrawl WARCs -> FineWeb-style corpus as Parquet, stage by stage on Spark."""

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from fineforge.flows.data_build_config import DataBuildConfig
from fineforge.flows.runtime import tracking_uri
from fineforge.tasks.common.stage import SCRUBBED, stats_rows
from fineforge.tasks.data_build import (
    ALL_DUMPS,
    dedup_stage,
    filter_stage,
    resolve_inputs,
    scrub_stage,
    track_build,
)


@flow(name="data_build", description="Build a FineWeb-style pre-training corpus from WARC files on Spark.")
def data_build(config: DataBuildConfig) -> dict:
    """Resolve the inputs, run each stage per dump, publish the statistics (Prefect artifact, MLflow)."""
    workdir = Path(config.workdir).resolve()
    groups = resolve_inputs(config.input, config.limit, config.sample, config.seed, config.source, config.dump)
    filtered = {dump: filter_stage(config.spark, config.filters, uris, workdir, dump) for dump, uris in groups.items()}
    stages: list[dict] = list(filtered.values())

    upstream = filtered
    dedup = config.dedup
    if dedup.minhash or dedup.exact or dedup.url:
        if dedup.scope == "dump":
            batches = {dump: [stats] for dump, stats in filtered.items()}
        else:
            batches = {ALL_DUMPS: list(filtered.values())}
        upstream = {group: dedup_stage(config.spark, dedup, batch, workdir, group) for group, batch in batches.items()}
        stages += upstream.values()

    outputs: dict[str, str] = {}
    for group, stats in upstream.items():
        stages.append(scrub_stage(config.spark, config.filters, stats, workdir, group))
        outputs[group] = str(workdir / group / SCRUBBED)

    run_id = None
    if config.mlflow:
        uri = tracking_uri(workdir, config.mlflow_tracking_uri)
        run_id = track_build(uri, config.mlflow_experiment, config.model_dump(mode="json"), stages, workdir)
        create_markdown_artifact(
            f"MLflow run `{run_id}` in experiment `{config.mlflow_experiment}` at `{uri}`",
            key="data-build-mlflow-run",
        )
    create_table_artifact([row for s in stages for row in stats_rows(s)], key="data-build-stats",
                          description="Documents in/out and drops by reason, per stage and step.")
    return {"outputs": outputs, "stages": stages, "mlflow_run_id": run_id}
