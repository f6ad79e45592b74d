"""The `data_build` flow: CommonCrawl WARCs -> FineWeb-style corpus as Parquet, stage by stage on Spark.

The work dir is a local folder or `s3://bucket/prefix` (each stage is then published to the store and committed
there, `tasks/common/remote_stage.py`); the outputs it returns are local folders (in a remote work dir, those of
its staging copy, which hold the committed outputs).
"""

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from fineforge.flows.data_build_config import DataBuildConfig
from fineforge.flows.lineage import prefect_run_tags
from fineforge.tasks.common.object_store import work_dir
from fineforge.tasks.common.stage import STATS_FILE, StageOutput
from fineforge.tasks.common.stage_task import run_stage
from fineforge.tasks.common.statistics import stats_rows
from fineforge.tasks.data_build import ALL_DUMPS, resolve_inputs
from fineforge.tasks.dedup.job import DedupStage
from fineforge.tasks.filter.job import FilterStage
from fineforge.tasks.sample.job import SampleStage
from fineforge.tasks.scrub.job import ScrubStage
from fineforge.tasks.tracking import tag_run, track_stages, tracking_uri


def _dedup_batches(config: DataBuildConfig, filtered: dict[str, StageOutput]) -> dict[str, list[StageOutput]]:
    """The filtered outputs each dedup stage reads: one dump each, or all together (scope "all")."""
    if config.dedup.scope == "dump":
        return {dump: [output] for dump, output in filtered.items()}
    return {ALL_DUMPS: list(filtered.values())}


@flow(name="data_build", description="Build a FineWeb-style pre-training corpus from WARC files on Spark.")
def data_build(config: DataBuildConfig) -> dict:
    """Resolve the inputs, run each stage per dump, publish the statistics (Prefect artifact, MLflow)."""
    workdir = work_dir(config.workdir)

    def run(stage) -> StageOutput:
        return run_stage(stage, workdir.uri, config.spark, config.incremental)

    groups = resolve_inputs(config.input, config.limit, config.sample, config.seed, config.source, config.dump,
                            config.since)
    corpus = {dump: run(FilterStage(config.filters, uris, dump)) for dump, uris in groups.items()}
    outputs = list(corpus.values())
    if config.dedup.active:
        batches = _dedup_batches(config, corpus)
        corpus = {group: run(DedupStage(config.dedup, inputs, group)) for group, inputs in batches.items()}
        outputs += corpus.values()
    corpus = {group: run(ScrubStage(config.scrub, [output], group)) for group, output in corpus.items()}
    outputs += corpus.values()
    if config.sample_documents is not None:
        sampled = [output for output in outputs if output.name == config.sample_documents.input]
        corpus = {output.group: run(SampleStage(config.sample_documents, [output], output.group)) for output in sampled}
        outputs += corpus.values()

    run_id = None
    if config.mlflow:
        uri = tracking_uri(workdir.local, config.mlflow_tracking_uri)
        run_name = "data_build " + ", ".join(sorted({output.group for output in outputs}))
        statistics = [output.statistics for output in outputs]
        files = [output.path / STATS_FILE for output in outputs]
        params = config.model_dump(mode="json")
        run_id = track_stages(uri, config.mlflow_experiment, run_name, params, statistics, files)
        tag_run(uri, run_id, prefect_run_tags())
        create_markdown_artifact(
            f"MLflow run `{run_id}` in experiment `{config.mlflow_experiment}` at `{uri}`",
            key="data-build-mlflow-run",
        )
    create_table_artifact([row for output in outputs for row in stats_rows(output.statistics)], key="data-build-stats",
                          description="Documents in/out and drops by reason, per stage and step.")
    return {"outputs": {group: str(output.path) for group, output in corpus.items()}, "stages": outputs,
            "mlflow_run_id": run_id}
