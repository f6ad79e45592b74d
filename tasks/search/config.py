"""Where the search index lives and what builds it: the work dir's layout and the stage's config.

No Prefect here: the CLI validates a config and the query side opens the index without importing it
(Prefect reads its settings, such as its home, when first imported).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from fineforge.tasks.common.stage import STATS_FILE
from fineforge.tasks.scrub.config import SCRUBBED
from fineforge.tasks.search.passages import PassageConfig

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
