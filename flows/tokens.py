"""The `tokenize` flow: Parquet documents -> llm.c token shards with a manifest, on Spark."""

from prefect import flow

from fineforge.flows.lineage import prefect_run_tags
from fineforge.model.shards import MANIFEST
from fineforge.tasks.common.stage import STATS_FILE, StageOutput
from fineforge.tasks.common.stage_task import run_stage
from fineforge.tasks.tokens.config import TokenizeConfig
from fineforge.tasks.tokens.job import TokensStage
from fineforge.tasks.tracking import tag_run, track_stages

MLFLOW_EXPERIMENT = "fineforge-tokenize"


@flow(name="tokenize", description="Tokenize the built corpus into train/val token shards (llm.c format).")
def tokenize(config: TokenizeConfig, mlflow_tracking_uri: str | None = None) -> StageOutput:
    """Run the tokens stage (its statistics become a Prefect table artifact); with an MLflow store, record it as
    a run of the experiment fineforge-tokenize (statistics as metrics, stats.json and the manifest as artifacts)."""
    output = run_stage(TokensStage(config), config.workdir, config.spark)
    if mlflow_tracking_uri:
        files = [output.path / STATS_FILE, output.path / MANIFEST]
        run_id = track_stages(mlflow_tracking_uri, MLFLOW_EXPERIMENT, f"tokenize {config.name}",
                              config.model_dump(mode="json"), [output.statistics], files)
        tag_run(mlflow_tracking_uri, run_id, prefect_run_tags())
    return output
