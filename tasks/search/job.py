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

import json
import logging
import os
import shutil
from pathlib import Path

import tantivy
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from fineforge.tasks.common.stage import SCRUBBED, STATS_FILE, file_identity, fingerprint, merge_counts, run_stage
from fineforge.tasks.search.index import (
    SCHEMA_VERSION,
    WRITER_HEAP_BYTES,
    add_dump,
    open_index,
    parquet_documents,
)
from fineforge.tasks.search.passages import PassageConfig

log = logging.getLogger(__name__)

SEARCH = "search"  # the stage's name
SEARCH_GROUP = "all-dumps"  # the index spans every dump, like the output group of a cross-dump deduplication
CORPUS_STAGE = SCRUBBED  # the data build's final documents


class SearchIndexConfig(BaseModel):
    """Which dumps to index and how documents are cut into passages."""

    workdir: str = Field("work", description="Where the data build wrote <dump>/scrubbed/; indexes go beside it.")
    dumps: list[str] | None = Field(None, description="Dumps to index; default: every dump with a corpus.")
    passage_words: int = Field(150, ge=1, description="Words per passage.")
    passage_overlap: int = Field(30, ge=0, description="Words shared by neighbouring passages.")
    title_words: int = Field(15, ge=1, description="A first line of at most this many words is the title.")
    threads: int = Field(0, ge=0, description="tantivy indexing threads (0: tantivy's choice by cores).")

    @field_validator("workdir")
    @classmethod
    def _has_corpus(cls, workdir: str) -> str:
        if not corpus_dumps(Path(workdir)):
            raise ValueError(f"no corpus in {workdir}/<dump>/{CORPUS_STAGE}/: build it first with "
                             f"`fineforge data build --workdir {workdir}`")
        return workdir

    @field_validator("dumps")
    @classmethod
    def _dumps_have_corpus(cls, dumps: list[str] | None, info: ValidationInfo) -> list[str] | None:
        workdir = info.data.get("workdir")
        available = corpus_dumps(Path(workdir)) if workdir else []
        missing = sorted(set(dumps or []) - set(available)) if available else []
        if missing:
            raise ValueError(f"no corpus for {', '.join(missing)} in {workdir} (dumps with a corpus: "
                             f"{', '.join(available)})")
        return dumps

    @field_validator("passage_overlap")
    @classmethod
    def _overlap_below_words(cls, overlap: int, info: ValidationInfo) -> int:
        words = info.data.get("passage_words")
        if words is not None and overlap >= words:
            raise ValueError(f"must be below passage_words ({words}), got {overlap}")
        return overlap

    def passage_config(self) -> PassageConfig:
        return PassageConfig(self.passage_words, self.passage_overlap, self.title_words)

    def selected_dumps(self) -> list[str]:
        return self.dumps or corpus_dumps(Path(self.workdir))


def corpus_dumps(workdir: Path) -> list[str]:
    """The dumps (and dump groups) whose final documents are complete: `<workdir>/<dump>/scrubbed/stats.json`."""
    return sorted(p.parent.parent.name for p in Path(workdir).glob(f"*/{CORPUS_STAGE}/{STATS_FILE}"))


def corpus_files(workdir: Path, dump: str) -> list[Path]:
    return sorted(p for p in (Path(workdir) / dump / CORPUS_STAGE).glob("*.parquet") if not p.name.startswith("."))


def index_path(workdir: Path) -> Path:
    """Where the complete index lives."""
    return Path(workdir) / SEARCH_GROUP / SEARCH


def indexed_dumps(workdir: Path) -> dict[str, dict]:
    """The dumps in the complete index, with their counts and fingerprints ({} when there is no index)."""
    stats_path = index_path(workdir) / STATS_FILE
    return json.loads(stats_path.read_text()).get("dumps", {}) if stats_path.is_file() else {}


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
