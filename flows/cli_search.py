"""`fineforge search ...`: build the corpus's search index, and search it.

`fineforge search "words" [-k N]` searches (it is `fineforge search query "words"`); `fineforge search
build` builds the index. To search for the word "build" alone, say `fineforge search query build`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from fineforge.flows.cli_output import console, fail, validation_message

QUERY_COMMAND = "query"


class QueryByDefault(TyperGroup):
    """A command group whose arguments go to its `query` command unless they name another command."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [QUERY_COMMAND, *args]
        return super().parse_args(ctx, args)


search_app = typer.Typer(cls=QueryByDefault, no_args_is_help=True)


@search_app.command(QUERY_COMMAND)
def query(
    text: str = typer.Argument(..., help="What to search for (words; no query syntax)."),
    k: int = typer.Option(5, "-k", help="How many passages to print.", min=1),
    workdir: Path = typer.Option(Path("work"), "--workdir", "-w", help="The work dir the index was built in."),
    dump: list[str] = typer.Option(None, "--dump", "-d", help="Search only this dump (repeatable); default: all."),
) -> None:
    """Print the passages that match best, with url and BM25 score (`fineforge search "words"`)."""
    from fineforge.tasks.search.index import SearchError
    from fineforge.tasks.search.query import CorpusSearch

    try:
        hits = CorpusSearch(workdir, dump or None, k).search(text)
    except SearchError as e:
        fail(str(e))
    if not hits:
        console.print(f"no results for: {text}")
    for rank, hit in enumerate(hits, 1):
        console.print(Text.assemble((f"{rank}. ", "bold"), (f"{hit.score:.3f}", "cyan"), f"  {hit.dump}  ",
                                    (hit.url, "underline")), soft_wrap=True)
        console.print(Text(hit.title, style="bold"), soft_wrap=True)
        console.print(Text(hit.text + "\n"), soft_wrap=True)


@search_app.command("build")
def build(
    workdir: Path = typer.Option(Path("work"), "--workdir", "-w", help="Where the data build wrote its output."),
    dump: list[str] = typer.Option(None, "--dump", "-d", help="Index only this dump (repeatable); default: all."),
    passage_words: int = typer.Option(150, help="Words per passage."),
    passage_overlap: int = typer.Option(30, help="Words shared by neighbouring passages."),
    threads: int = typer.Option(0, help="Indexing threads (0: tantivy's choice by cores)."),
) -> None:
    """Index the built corpus (<workdir>/<dump>/scrubbed/) into <workdir>/all-dumps/search/, updating changed dumps."""
    from pydantic import ValidationError

    from fineforge.tasks.search.config import SearchIndexConfig

    try:
        config = SearchIndexConfig(workdir=str(workdir), dumps=dump or None, passage_words=passage_words,
                                   passage_overlap=passage_overlap, threads=threads)
    except ValidationError as e:
        fail(validation_message(e))

    from fineforge.flows.runtime import prepare_runtime

    prepare_runtime(workdir)
    from fineforge.flows.search_index import search_index

    output = search_index(config)
    stats = output.statistics
    skipped = " (skipped: already up to date)" if output.skipped else ""
    table = Table(title=f"search index {stats['dump']}/{stats['stage']}{skipped}")
    for column in ("dump", "documents", "passages", "empty", "this run"):
        table.add_column(column, justify="left" if column in ("dump", "this run") else "right")
    for dump, counts in sorted(stats["dumps"].items()):
        done = "indexed" if counts.get("reindexed") and not skipped else "kept"
        table.add_row(dump, str(counts["documents_out"]), str(counts["passages"]), str(counts["empty"]), done)
    for dump in stats.get("removed", []):
        table.add_row(dump, "", "", "", "removed (corpus gone)")
    console.print(table)
    console.print(f"{stats['index_bytes'] / 2**20:.1f} MB in {stats['seconds']} s; search it: "
                  f"fineforge search \"words\" --workdir {workdir}")
