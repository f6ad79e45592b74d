"""`fineforge quality ...`: train the fastText quality classifier, score the build's documents with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from fineforge.flows.cli_config import command_config
from fineforge.flows.cli_output import console, fail

quality_app = typer.Typer(no_args_is_help=True)

CONFIG_HELP = "JSON config file; options override it."
WORKDIR_HELP = "The data build's output root (./work)."
POSITIVES_HELP = ("A positive source KIND:PATH (repeatable; replaces the config's): gsm8k:FILE, oasst:FILE, "
                  "conversations:FILE (JSONL messages), documents:FOLDER (Parquet documents).")


def positive_source(spec: str) -> dict[str, Any]:
    """`KIND:PATH` as a positive source of the config."""
    kind, separator, path = spec.partition(":")
    if not separator or not path:
        fail(f"--positives {spec!r}: expected KIND:PATH, e.g. gsm8k:train.jsonl")
    return {"kind": kind, "input": [path]} if kind == "documents" else {"kind": kind, "path": path}


def _run_flow(flow_name: str, config):
    """Run the quality flow `flow_name` on the embedded (or configured) Prefect; bad data is one error line and
    exit 1. The runtime is prepared before the flow's module imports Prefect, which reads its settings then."""
    from fineforge.flows.runtime import prepare_runtime

    prepare_runtime(Path(config.workdir))
    from fineforge.flows import quality

    try:
        return getattr(quality, flow_name)(config)
    except ValueError as e:
        fail(str(e), code=1)


@quality_app.command("train")
def train(
    config_file: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    workdir: Path = typer.Option(None, "--workdir", "-w", help=WORKDIR_HELP),
    name: str = typer.Option(None, help="The classifier's name: WORKDIR/quality/NAME/ (classifier)."),
    positives: list[str] = typer.Option(None, "--positives", "-p", help=POSITIVES_HELP),
    negatives: list[Path] = typer.Option(None, "--negatives", "-n", help="Parquet folders of the build's documents "
                                         "(repeatable); default: every WORKDIR/DUMP/scrubbed/."),
    negatives_sample: int = typer.Option(None, help="Negative documents sampled (default: as many as positives)."),
    held_out: float = typer.Option(None, help="Share of the texts held out to measure precision and recall (0.1)."),
    threshold: float = typer.Option(None, help="Positive score from which a document is kept (0.5)."),
    epoch: int = typer.Option(None, help="fastText training epochs (10)."),
    seed: int = typer.Option(None, help="Seed of the samples, the held-out split and fastText (0)."),
) -> None:
    """Train a fastText classifier on positives against a sample of the build's documents; print held-out
    precision, recall and F1 (the `quality_train` Prefect flow)."""
    from fineforge.tasks.quality.config import QualityTrainConfig

    config = command_config(QualityTrainConfig, config_file, {
        "workdir": workdir, "name": name, "positives": [positive_source(spec) for spec in positives or []],
        "negatives.input": negatives, "negatives.sample": negatives_sample, "held_out": held_out,
        "threshold": threshold, "fasttext.epoch": epoch, "seed": seed,
    })
    result = _run_flow("quality_train", config)
    report, output = result["report"], result["output"]
    table = Table(title=f"quality/{config.name}" + (" (skipped: already complete)" if output.skipped else ""))
    for column in ("threshold", "precision", "recall", "F1"):
        table.add_column(column, justify="right")
    for row in report["by_threshold"]:
        style = "bold" if row["threshold"] == report["threshold"] else None
        table.add_row(*("n/a" if row[key] is None else f"{row[key]:.3f}"
                        for key in ("threshold", "precision", "recall", "f1")), style=style)
    console.print(table)
    console.print(f"held out: {report['positives_held_out']} positives, {report['negatives_held_out']} negatives; "
                  f"at threshold {report['threshold']}: precision {report['precision']}, recall {report['recall']}, "
                  f"F1 {report['f1']}")
    console.print(f"classifier in {output.path}")


@quality_app.command("score")
def score(
    config_file: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    workdir: Path = typer.Option(None, "--workdir", "-w", help=WORKDIR_HELP),
    model: Path = typer.Option(None, "--model", "-m", help="The trained classifier's folder "
                               "(WORKDIR/quality/classifier/)."),
    input: list[Path] = typer.Option(None, "--input", "-i", help="Document stage folders (repeatable); default: "
                                     "every WORKDIR/DUMP/scrubbed/."),
    threshold: float = typer.Option(None, help="Lowest positive score kept (default: the classifier's)."),
    examples: int = typer.Option(None, help="Highest- and lowest-scored documents in the report (5)."),
    spark_master: str = typer.Option(None, help="Spark master: local[*] (default), spark://..., k8s://..."),
) -> None:
    """Score every document with the classifier on Spark, keep those at or above the threshold (score as a column)
    in WORKDIR/DUMP/quality_filtered/ (the `quality_score` Prefect flow)."""
    from fineforge.tasks.quality.config import QualityScoreConfig

    config = command_config(QualityScoreConfig, config_file, {
        "workdir": workdir, "model": model, "input": input, "threshold": threshold, "examples": examples,
        "spark.master": spark_master,
    })
    result = _run_flow("quality_score", config)
    table = Table(title=f"quality_filtered (threshold {config.threshold})")
    for column in ("dump", "documents", "kept", "dropped", "output"):
        table.add_column(column, justify="left" if column in ("dump", "output") else "right")
    for output in result["outputs"]:
        stats = output.statistics
        table.add_row(output.group, str(stats["documents_in"]), str(stats["documents_out"]),
                      str(stats["documents_in"] - stats["documents_out"]), str(output.path))
    console.print(table)
