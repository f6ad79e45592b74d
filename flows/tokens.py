"""The `tokenize` flow: Parquet documents -> llm.c token shards with a manifest, on Spark."""

from prefect import flow

from fineforge.tasks.common.stage import StageOutput
from fineforge.tasks.common.stage_task import run_stage
from fineforge.tasks.tokens.config import TokenizeConfig
from fineforge.tasks.tokens.job import TokensStage


@flow(name="tokenize", description="Tokenize the built corpus into train/val token shards (llm.c format).")
def tokenize(config: TokenizeConfig) -> StageOutput:
    """Run the tokens stage (its statistics become a Prefect table artifact)."""
    return run_stage(TokensStage(config), config.workdir, config.spark)
