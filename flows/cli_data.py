"""`fineforge data ...` commands."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_config import command_config
from fineforge.flows.cli_output import console, fail

data_app = typer.Typer(no_args_is_help=True)


def stats_table(outputs: list) -> Table:
    """Documents in/out of every stage (StageOutput) and step, with the drops by reason."""
    table = Table(title="data build statistics")
    for column in ("dump", "stage / step", "in", "out", "dropped (by reason)"):
        table.add_column(column, justify="right" if column in ("in", "out") else "left")
    for output in outputs:
        stats = output.statistics
        skipped = " (skipped: already complete)" if output.skipped else _appended(stats)
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.get("dropped", {}).items()) if v)
        table.add_row(stats["dump"], f"[bold]{stats['stage']}[/]{skipped}", str(stats.get("documents_in", "")),
                      str(stats.get("documents_out", "")), reasons)
        for step in stats.get("steps", []):
            drops = ", ".join(f"{k.removeprefix('dropped_')}={v}" for k, v in step.items()
                              if k.startswith("dropped_") and v)
            table.add_row("", f"  {step['name']}", str(step.get("documents_in", "")),
                          str(step.get("documents_out", "")), drops)
    return table


def require_remote_inputs(config) -> None:
    """A dump list or remote glob that cannot be read is one error line, before anything starts (the flow's
    first task resolves it again, for runs started from Prefect)."""
    from fineforge.tasks.filter.warc_input import InputError, needs_network, resolve_warc_inputs

    if not needs_network(config.input, config.source):
        return
    try:
        resolve_warc_inputs(config.input, limit=config.limit, sample=config.sample, seed=config.seed,
                            source=config.source, since=config.since)
    except InputError as e:
        fail(str(e))


def _appended(stats: dict) -> str:
    """' (appended: ...)' for the statistics of an output that grew by new input files, else ''."""
    from fineforge.tasks.common.increments import ALREADY_PROCESSED, PROCESSED

    if ALREADY_PROCESSED not in stats:
        return ""
    return f" (appended: {stats[PROCESSED]} new input files, {stats[ALREADY_PROCESSED]} already processed)"


@data_app.command("build")
def build(
    input: str = typer.Option(None, "--input", "-i", help="WARC folder or glob, a file listing WARC paths/URLs, "
                              "a CommonCrawl dump name (CC-MAIN-2024-22), or a dump spec: latest, CC-MAIN-*."),
    workdir: str = typer.Option(None, "--workdir", "-w", help="Output root, a folder or s3://bucket/prefix; "
                                "default ./work."),
    since: str = typer.Option(None, help="With a dump spec: only dumps crawled on or after this date (YYYY-MM-DD)."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON config file; options override it."),
    dump: str = typer.Option(None, help="Dump name for inputs whose path names none (default 'local')."),
    limit: int = typer.Option(None, help="Only the first N WARC files."),
    sample: int = typer.Option(None, help="A random sample of N WARC files."),
    seed: int = typer.Option(None, help="Seed of the random sample."),
    source: str = typer.Option(None, help="https://data.commoncrawl.org (default) or s3://commoncrawl."),
    language: list[str] = typer.Option(None, "--language", "-l", help="Language to keep (repeatable); default en."),
    sample_fraction: float = typer.Option(None, help="Also keep this fraction of the documents (by id hash) "
                                          "in <workdir>/<dump>/sampled/."),
    spark_master: str = typer.Option(None, help="Spark master: local[*] (default), spark://..., k8s://..."),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not record an MLflow run."),
) -> None:
    """Build the FineWeb-style corpus: extract, filter, deduplicate and scrub WARC records on Spark."""
    from fineforge.flows.data_build_config import DataBuildConfig

    config = command_config(DataBuildConfig, config_file, {
        "input": input, "workdir": workdir, "since": since, "dump": dump, "limit": limit, "sample": sample,
        "seed": seed, "source": source, "filters.language.languages": language,
        "sample_documents.fraction": sample_fraction, "spark.master": spark_master,
        "mlflow": False if no_mlflow else None,
    })

    from fineforge.flows.runtime import prepare_runtime, require_spark_master
    from fineforge.tasks.common.object_store import local_path

    require_spark_master(config.spark.master)
    require_remote_inputs(config)
    prepare_runtime(local_path(config.workdir))
    from fineforge.flows.data_build import data_build
    from fineforge.flows.runtime import report_in_one_line
    from fineforge.tasks.filter.job import NoDocumentsKept
    from fineforge.tasks.filter.warc_input import InputError

    report_in_one_line(InputError, NoDocumentsKept)
    try:
        result = data_build(config)
    except InputError as e:  # a remote input spec, resolved by the flow's first task
        fail(str(e))
    except NoDocumentsKept as e:
        fail(str(e), code=1)
    console.print(stats_table(result["stages"]))
    for dump_name, path in result["outputs"].items():
        console.print(f"[bold]{dump_name}[/]: documents in {path}  (statistics: {path}/stats.json)")
    if result["mlflow_run_id"]:
        console.print(f"MLflow run: {result['mlflow_run_id']}")


@data_app.command("schedule")
def schedule(
    cron: str = typer.Option(..., help="When to rebuild, as a cron expression, e.g. '0 3 * * 0' (Sundays 03:00)."),
    timezone: str = typer.Option("UTC", help="Time zone of the cron expression (IANA name, e.g. Europe/Berlin)."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON config of the build."),
    input: str = typer.Option(None, "--input", "-i", help="WARC inputs (overrides the config's); a dump spec "
                              "(latest, CC-MAIN-*) is resolved at each run."),
    workdir: str = typer.Option(None, "--workdir", "-w", help="Output root, a folder or s3://bucket/prefix "
                                "(overrides the config's)."),
    since: str = typer.Option(None, help="With a dump spec: only dumps crawled on or after this date (YYYY-MM-DD)."),
    name: str = typer.Option("scheduled", help="Name of the Prefect deployment."),
) -> None:
    """Register `data_build` as a Prefect deployment that re-runs on a cron schedule (needs `fineforge server`).

    Each run resolves the input then (`latest` moves on to newer dumps) and processes only new WARC files."""
    from fineforge.flows.data_build_config import DataBuildConfig

    config = command_config(DataBuildConfig, config_file, {"input": input, "workdir": workdir, "since": since})

    from fineforge.flows.data_build import data_build
    from fineforge.flows.deploy import DeployError, schedule_flow

    try:
        deployment_id = schedule_flow(data_build, name, {"config": config.model_dump(mode="json")}, cron, timezone,
                                      Path.cwd())
    except DeployError as e:
        fail(str(e))
    console.print(f"deployment data_build/{name} ({deployment_id}) runs on '{cron}' ({timezone}), one run at a time; "
                  "a worker of the `fineforge` pool runs it (`fineforge server start` starts one)")

@data_app.command("eval-extraction")
def eval_extraction(
    warc: list[Path] = typer.Option(..., help="WARC file(s) holding the labelled pages (repeatable)."),
    labels: Path = typer.Option(..., help="Labels in trafilatura's format: {url: {with: [...], without: [...]}}."),
    method: list[str] = typer.Option(None, "--method", "-m", help="Extraction method (repeatable); default all."),
    no_fallbacks: bool = typer.Option(False, "--no-fallbacks", help="Also score trafilatura without fallbacks."),
    split: str = typer.Option("all", help="Pages to report: all, tune or held-out (by URL hash)."),
) -> None:
    """Score extraction methods on labelled pages: precision, recall, F1 and CPU ms/page, side by side."""
    from fineforge.tasks.filter.extraction import EXTRACTION_METHODS
    from fineforge.tasks.filter.extraction_eval import SPLITS, evaluate, load_labelled_pages, results_table

    methods = list(method or EXTRACTION_METHODS)
    unknown = [m for m in methods if m not in EXTRACTION_METHODS]
    if unknown:
        fail(f"--method: unknown {', '.join(unknown)}; one of {', '.join(EXTRACTION_METHODS)}")
    if split not in SPLITS:
        fail(f"--split: unknown {split!r}; one of {', '.join(SPLITS)}")
    for path, option in [*((w, "--warc") for w in warc), (labels, "--labels")]:
        if not path.is_file():
            fail(f"{option}: file not found: {path}")
    pages, missing = load_labelled_pages(warc, labels)
    if not pages:
        fail(f"no labelled page of {labels} is in {', '.join(map(str, warc))}")
    variants = [(m, True) for m in methods] + [(m, False) for m in methods if no_fallbacks and m != "resiliparse"]
    results = [evaluate(pages, m, fallbacks)[split] for m, fallbacks in variants]
    table = Table(title=f"extraction on {len(pages)} labelled pages ({split}; {missing} labelled URLs not in the WARC)")
    header, *rows = results_table(results)
    for column in header:
        table.add_column(column, justify="left" if column in ("method", "split") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
