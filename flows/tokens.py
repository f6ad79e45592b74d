"""The `tokenize` flow: Parquet documents -> llm.c token shards with a manifest, on Spark."""

from prefect import flow
from prefect.artifacts import create_table_artifact

from fineforge.tasks.common.stage import stats_rows
from fineforge.tasks.tokens.job import TokenizeConfig, tokenize_stage


@flow(name="tokenize", description="Tokenize the built corpus into train/val token shards (llm.c format).")
def tokenize(config: TokenizeConfig) -> dict:
    """Run the tokenize stage and publish its statistics as a Prefect artifact."""
    stats = tokenize_stage(config)
    create_table_artifact(stats_rows(stats), key="tokenize-stats",
                          description="Documents in/out, drops by reason, tokens per split, shards.")
    return stats
