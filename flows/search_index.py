"""The `search_index` flow: the built corpus -> one BM25 search index per dump (tantivy)."""

from prefect import flow
from prefect.artifacts import create_table_artifact

from fineforge.tasks.common.stage import stats_rows
from fineforge.tasks.search.config import SearchIndexConfig
from fineforge.tasks.search.job import search_index_stage


@flow(name="search_index", description="Index the built corpus's passages for full-text (BM25) search.")
def search_index(config: SearchIndexConfig) -> dict:
    """Bring the index up to date with the selected dumps (skipped when it is) and publish the statistics."""
    stats = search_index_stage(config)
    rows = stats_rows(stats) + [{"dump": dump, "stage": stats["stage"], "step": "", "metric": key, "value": value}
                                for dump, counts in stats["dumps"].items() for key, value in counts.items()
                                if key != "fingerprint"]
    create_table_artifact(rows, key="search-index-stats",
                          description="Documents and passages in the index, per dump; index size, time.")
    return stats
