"""The `search_index` flow: the built corpus -> one BM25 search index per dump (tantivy)."""

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from fineforge.tasks.common.stage import StageOutput
from fineforge.tasks.common.stage_task import run_stage
from fineforge.tasks.search.config import SearchIndexConfig
from fineforge.tasks.search.job import SearchIndexStage


@flow(name="search_index", description="Index the built corpus's passages for full-text (BM25) search.")
def search_index(config: SearchIndexConfig) -> StageOutput:
    """Bring the index up to date with the selected dumps (skipped when it is) and publish the statistics."""
    workdir = Path(config.workdir).resolve()
    output = run_stage(SearchIndexStage(config, workdir), workdir)
    stats = output.statistics
    rows = [{"dump": dump, "stage": stats["stage"], "step": "", "metric": key, "value": value}
            for dump, counts in stats["dumps"].items() for key, value in counts.items() if key != "fingerprint"]
    create_table_artifact(rows, key="search-index-dump-stats",
                          description="Documents and passages in the index, per dump.")
    return output
