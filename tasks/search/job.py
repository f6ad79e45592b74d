"""The search-index stage: the built corpus -> one BM25 index at `<workdir>/all-dumps/search/`, updated per dump.

One index holds every dump's passages, so BM25's term statistics (and thus scores) are those of the
whole corpus; a query can still be limited to named dumps. The index goes through the stage contract
(`tasks.common.stage.execute_stage`): written into a temporary folder, renamed into place with `stats.json`,
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
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import tantivy

from fineforge.tasks.common.stage import STATS_FILE, StageOutput, execute_stage, file_identity, fingerprint
from fineforge.tasks.common.statistics import merge_counts
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


@dataclass(frozen=True)
class SearchIndexStage:
    """`<workdir>/all-dumps/search/`: the BM25 index of the selected dumps' corpus (no Spark)."""

    config: SearchIndexConfig
    workdir: Path
    group: ClassVar[str] = SEARCH_GROUP
    name: ClassVar[str] = SEARCH

    @cached_property
    def previous(self) -> dict[str, dict]:
        """The dumps in the current index, with their statistics."""
        return indexed_dumps(self.workdir)

    @cached_property
    def wanted(self) -> dict[str, str]:
        """The selected dumps, with the fingerprint of their passages."""
        return {dump: dump_fingerprint(self.workdir, dump, self.config) for dump in self.config.selected_dumps()}

    @cached_property
    def kept(self) -> dict[str, dict]:
        """Dumps of the current index that stay as they are: not selected, but their corpus still exists."""
        corpus = set(corpus_dumps(self.workdir))
        return {dump: stats for dump, stats in self.previous.items() if dump not in self.wanted and dump in corpus}

    def fingerprint_parts(self) -> list[Any]:
        return [sorted(self.wanted.items()), sorted((dump, stats["fingerprint"]) for dump, stats in self.kept.items())]

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        previous, config = self.previous, self.config
        gone = sorted(set(previous) - set(self.wanted) - set(self.kept))
        if previous:
            shutil.copytree(index_path(self.workdir), output_dir, copy_function=os.link,
                            ignore=shutil.ignore_patterns(STATS_FILE, "*.lock"))
        else:
            output_dir.mkdir(parents=True)
        index = open_index(output_dir, create=True)
        writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=config.threads)
        try:
            dumps = self._index_dumps(writer, gone)
        except BaseException:
            writer.rollback()  # the writer's threads stop writing before the stage removes its temporary folder
            writer.wait_merging_threads()
            raise
        writer.commit()
        writer.wait_merging_threads()
        return {**index_totals(dumps), "index_bytes": folder_bytes(output_dir), "dumps": dumps, "removed": gone}

    def _index_dumps(self, writer: tantivy.IndexWriter, gone: list[str]) -> dict[str, dict]:
        """Delete the gone dumps' passages and (re)index each wanted dump whose corpus changed; its counts by dump."""
        for dump in gone:
            writer.delete_documents_by_term("dump", dump)
        dumps = {dump: {**stats, "reindexed": False} for dump, stats in self.kept.items()}
        for dump, dump_fp in self.wanted.items():
            if self.previous.get(dump, {}).get("fingerprint") == dump_fp:
                dumps[dump] = {**self.previous[dump], "reindexed": False}
                continue
            documents = parquet_documents(corpus_files(self.workdir, dump))
            counts = add_dump(writer, dump, documents, self.config.passage_config())
            dumps[dump] = {"fingerprint": dump_fp, **counts, "reindexed": True}
            log.info("%s: indexed %d passages of %d documents", dump, counts["passages"], counts["documents_out"])
        return dumps


def build_search_index(workdir: Path, config: SearchIndexConfig) -> StageOutput:
    """Bring the index up to date with the selected dumps (skipped when it already is), without Prefect."""
    return execute_stage(SearchIndexStage(config, Path(workdir)), workdir)


def index_totals(dumps: dict[str, dict]) -> dict:
    """The stage's document counts, summed over the dumps in the index."""
    total = merge_counts({k: v for k, v in stats.items() if k in ("documents_in", "documents_out", "passages",
                                                                    "empty")} for stats in dumps.values())
    return {"documents_in": total.get("documents_in", 0), "documents_out": total.get("documents_out", 0),
            "dropped": {"empty": total.get("empty", 0)}, "passages": total.get("passages", 0)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())

