"""`fineforge data ...` commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> None:
    """One clear error line and a nonzero exit, before any work is done."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def validation_message(error) -> str:
    """A pydantic ValidationError as one line that names each bad field."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors()]
    return "invalid config: " + "; ".join(parts)


def stats_table(stages: list[dict]) -> Table:
    """Documents in/out of every stage and step, with the drops by reason."""
    table = Table(title="data build statistics")
    for column in ("dump", "stage / step", "in", "out", "dropped (by reason)"):
        table.add_column(column, justify="right" if column in ("in", "out") else "left")
    for stats in stages:
        skipped = " (skipped: already complete)" if stats.get("skipped") else ""
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.get("dropped", {}).items()) if v)
        table.add_row(stats["dump"], f"[bold]{stats['stage']}[/]{skipped}", str(stats.get("documents_in", "")),
                      str(stats.get("documents_out", "")), reasons)
        for step in stats.get("steps", []):
            drops = ", ".join(f"{k.removeprefix('dropped_')}={v}" for k, v in step.items()
                              if k.startswith("dropped_") and v)
            table.add_row("", f"  {step['name']}", str(step.get("documents_in", "")),
                          str(step.get("documents_out", "")), drops)
    return table


@data_app.command("build")
def build(
    input: str = typer.Option(None, "--input", "-i", help="WARC folder or glob, a file listing WARC paths/URLs, "
                              "or a CommonCrawl dump name (CC-MAIN-2024-22)."),
    workdir: Path = typer.Option(None, "--workdir", "-w", help="Output root; default ./work."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON config file; options override it."),
    dump: str = typer.Option(None, help="Dump name for inputs whose path names none (default 'local')."),
    limit: int = typer.Option(None, help="Only the first N WARC files."),
    sample: int = typer.Option(None, help="A random sample of N WARC files."),
    seed: int = typer.Option(None, help="Seed of the random sample."),
    source: str = typer.Option(None, help="https://data.commoncrawl.org (default) or s3://commoncrawl."),
    language: list[str] = typer.Option(None, "--language", "-l", help="Language to keep (repeatable); default en."),
    spark_master: str = typer.Option(None, help="Spark master: local[*] (default), spark://..., k8s://..."),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not record an MLflow run."),
) -> None:
    """Build the FineWeb-style corpus: extract, filter and scrub WARC records on Spark."""
    from pydantic import ValidationError

    from flows.data_build_config import DataBuildConfig
    from tasks.warc_input import InputError, resolve_warc_inputs

    values: dict = {}
    if config_file is not None:
        if not config_file.is_file():
            fail(f"config file not found: {config_file}")
        try:
            values = json.loads(config_file.read_text())
        except json.JSONDecodeError as e:
            fail(f"config file {config_file} is not valid JSON: {e}")
    options = {"input": input, "workdir": workdir, "dump": dump, "limit": limit, "sample": sample, "seed": seed,
               "source": source}
    values.update({k: v for k, v in options.items() if v is not None})
    if language:
        values.setdefault("filters", {}).setdefault("language", {})["languages"] = list(language)
    if spark_master:
        values.setdefault("spark", {})["master"] = spark_master
    if no_mlflow:
        values["mlflow"] = False
    try:
        config = DataBuildConfig.model_validate(values)
        resolve_warc_inputs(config.input, limit=config.limit, sample=config.sample, seed=config.seed,
                            source=config.source)
    except ValidationError as e:
        fail(validation_message(e))
    except InputError as e:
        fail(str(e))

    from flows.runtime import prepare_runtime

    prepare_runtime(config.workdir)
    from flows.data_build import data_build

    result = data_build(config)
    console.print(stats_table(result["stages"]))
    for dump_name, path in result["outputs"].items():
        console.print(f"[bold]{dump_name}[/]: documents in {path}  (statistics: {path}/stats.json)")
    if result["mlflow_run_id"]:
        console.print(f"MLflow run: {result['mlflow_run_id']}")
