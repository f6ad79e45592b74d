"""The search-index stage: the built corpus -> one BM25 index at `<workdir>/all-dumps/search/`, updated per dump.

One index holds every dump's passages, so BM25's term statistics (and thus scores) are those of the
whole corpus; a query can still be limited to named dumps. The index goes through the stage contract
(`tasks.common.stage.run_stage`): written into a temporary folder, renamed into place with `stats.json`,
skipped when complete for the same corpus files and settings. Updates are incremental per dump: the
new version starts as hard links to the current one's files (tantivy never changes a file it wrote),
then only the dumps whose corpus or settings changed are replaced, and dumps whose corpus is gone are
removed. Documents are read with pyarrow and indexed by one multi-threaded tantivy writer on this
machine, where the index lives (Spark would only add its start-up and a collect to the driver: see
docs/search.md).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import tantivy
from prefect import task
from prefect.cache_policies import NO_CACHE

from fineforge.tasks.common.stage import STATS_FILE, file_identity, fingerprint, merge_counts, run_stage
from fineforge.tasks.search.config import (
    SEARCH,
    SEARCH_GROUP,
    SearchIndexConfig,
    corpus_dumps,
    corpus_files,
    index_path,
    indexed_dumps,
)
from fineforge.tasks.search.index import (
    SCHEMA_VERSION,
    WRITER_HEAP_BYTES,
    add_dump,
    open_index,
    parquet_documents,
)

log = logging.getLogger(__name__)


def dump_fingerprint(workdir: Path, dump: str, config: SearchIndexConfig) -> str:
    """What a dump's passages depend on: its corpus files, the passage settings, the index schema and format."""
    settings = config.model_dump(mode="json", include={"passage_words", "passage_overlap", "title_words"})
    return fingerprint(file_identity(corpus_files(workdir, dump)), settings, SCHEMA_VERSION, tantivy.__version__)


def build_search_index(workdir: Path, config: SearchIndexConfig) -> dict:
    """Bring the index up to date with the selected dumps (skipped when it already is); return its stats."""
    workdir = Path(workdir)
    previous = indexed_dumps(workdir)
    corpus = set(corpus_dumps(workdir))
    wanted = {dump: dump_fingerprint(workdir, dump, config) for dump in config.selected_dumps()}
    kept = {dump: stats for dump, stats in previous.items() if dump not in wanted and dump in corpus}
    gone = sorted(set(previous) - set(wanted) - set(kept))

    def work(output_dir: Path) -> dict:
        if previous:
            shutil.copytree(index_path(workdir), output_dir, copy_function=os.link,
                            ignore=shutil.ignore_patterns(STATS_FILE, "*.lock"))
        else:
            output_dir.mkdir(parents=True)
        index = open_index(output_dir, create=True)
        writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=config.threads)
        for dump in gone:
            writer.delete_documents_by_term("dump", dump)
        dumps = {dump: {**stats, "reindexed": False} for dump, stats in kept.items()}
        for dump, dump_fp in wanted.items():
            if previous.get(dump, {}).get("fingerprint") == dump_fp:
                dumps[dump] = {**previous[dump], "reindexed": False}
                continue
            counts = add_dump(writer, dump, parquet_documents(corpus_files(workdir, dump)), config.passage_config())
            dumps[dump] = {"fingerprint": dump_fp, **counts, "reindexed": True}
            log.info("%s: indexed %d passages of %d documents", dump, counts["passages"], counts["documents_out"])
        writer.commit()
        writer.wait_merging_threads()
        return {**index_totals(dumps), "index_bytes": folder_bytes(output_dir), "dumps": dumps, "removed": gone}

    parts = [sorted(wanted.items()), sorted((dump, stats["fingerprint"]) for dump, stats in kept.items())]
    return run_stage(workdir, SEARCH_GROUP, SEARCH, parts, work)


def index_totals(dumps: dict[str, dict]) -> dict:
    """The stage's document counts, summed over the dumps in the index."""
    total = merge_counts({k: v for k, v in stats.items() if k in ("documents_in", "documents_out", "passages",
                                                                    "empty")} for stats in dumps.values())
    return {"documents_in": total.get("documents_in", 0), "documents_out": total.get("documents_out", 0),
            "dropped": {"empty": total.get("empty", 0)}, "passages": total.get("passages", 0)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


@task(name="search-index", cache_policy=NO_CACHE)
def search_index_stage(config: SearchIndexConfig) -> dict:
    """Prefect task: bring the corpus's search index up to date."""
    return build_search_index(Path(config.workdir).resolve(), config)
