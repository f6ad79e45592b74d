"""`fineforge preferences import`: existing preference data (hh-rlhf pairs, OpenAssistant ranked replies) into a
rankings dataset."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_output import console, fail

preferences_app = typer.Typer(no_args_is_help=True)

MALFORMED_LINES_SHOWN = 20


@preferences_app.command("import")
def import_preferences(
    output: Path = typer.Option(..., "--output", "-o", help="The rankings dataset (JSONL) to append to."),
    hh_rlhf: Path = typer.Option(None, "--hh-rlhf", help="Anthropic hh-rlhf file of chosen/rejected pairs "
                                 "(.jsonl or .jsonl.gz)."),
    oasst: Path = typer.Option(None, "--oasst", help="OpenAssistant message trees, one per line: ranked replies "
                               "become K-way rankings."),
) -> None:
    """Append the judgements of an existing preference file; importing a file twice stores nothing new."""
    from fineforge.tasks.preferences.importers import import_hh_rlhf, import_oasst
    from fineforge.tasks.preferences.rankings import RankingsDataset

    given = {"--hh-rlhf": (hh_rlhf, import_hh_rlhf), "--oasst": (oasst, import_oasst)}
    given = {option: pair for option, pair in given.items() if pair[0] is not None}
    if len(given) != 1:
        fail("give exactly one of --hh-rlhf FILE and --oasst FILE")
    (option, (source, importer)), = given.items()
    if not source.is_file():
        fail(f"{option}: file not found: {source}")
    if output.is_dir():
        fail(f"--output: {output} is a folder; give the path of a JSONL file")
    result = importer(source)
    dataset = RankingsDataset(output)
    added = dataset.append_judgements(result.judgements)

    counts = {"judgements read": len(result.judgements), "stored (new)": added,
              "already stored": len(result.judgements) - added, "malformed lines skipped": len(result.malformed),
              "judgements in the dataset": len(dataset)}
    table = Table(title=f"{source.name} -> {output}")
    table.add_column("")
    table.add_column("count", justify="right")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    if result.malformed:
        shown = ", ".join(str(bad.line) for bad in result.malformed[:MALFORMED_LINES_SHOWN])
        more = len(result.malformed) - MALFORMED_LINES_SHOWN
        console.print(f"malformed lines (reasons logged above): {shown}" + (f" and {more} more" if more > 0 else ""))
