"""`fineforge pipeline run`: from WARC files to a pretrained model in one command (the Prefect flow `pipeline`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_config import command_config
from fineforge.flows.cli_output import console, fail
from fineforge.flows.cli_train import parse_settings

pipeline_app = typer.Typer(no_args_is_help=True)

TINY_PRESET = "configs/pipeline-tiny.json"


@pipeline_app.command("run")
def run(
    config_file: Path = typer.Option(None, "--config", "-c", help=f"JSON file of the pipeline's config, e.g. "
                                     f"{TINY_PRESET}; options override it."),
    input: str = typer.Option(None, "--input", "-i", help="WARC inputs of the data build (data_build.input)."),
    workdir: str = typer.Option(None, "--workdir", "-w", help="Everything goes under it (./work; a folder or "
                                "s3://bucket/prefix)."),
    spark_master: str = typer.Option(None, help="Spark master: local[*] (default), spark://..., k8s://..."),
    mlflow_uri: str = typer.Option(None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite in the "
                                   "work dir)."),
    settings: list[str] = typer.Option(None, "--set", help="Any field by its dotted name, e.g. --set "
                                       "pretrain.train.max_steps=20 (repeatable)."),
) -> None:
    """Data build -> tokenize -> pretrain, each skipped when complete; ends with a report card (report.md).

    Multi-node pretraining: every node runs this command with the same config and its own
    pretrain.launch.node_rank; nodes other than 0 only join the training once node 0 reaches it."""
    from fineforge.flows.pipeline_config import PipelineConfig

    overrides = {"data_build.input": input, "workdir": workdir, "spark.master": spark_master,
                 "mlflow_tracking_uri": mlflow_uri, **parse_settings(settings or [])}
    config = command_config(PipelineConfig, config_file, overrides)
    if config.pretrain.launch.node_rank > 0:
        join_training(config)
        return

    from fineforge.flows.runtime import prepare_runtime
    from fineforge.tasks.common.object_store import local_path

    prepare_runtime(local_path(config.workdir))
    from fineforge.flows.pipeline import pipeline
    from fineforge.tasks.training.completion import RunDirInUse
    from fineforge.tasks.training.launch import TorchrunError

    try:
        result = pipeline(config)
    except RunDirInUse as e:
        fail(str(e))
    except TorchrunError as e:
        fail(str(e).splitlines()[0], code=1)  # the whole log was streamed above
    table = Table(title="pipeline")
    for column in ("stage", "status", "wall s", "CPU s"):
        table.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for stage in result["stages"]:
        status = "skipped (complete)" if stage["skipped"] else "ran"
        table.add_row(stage["name"], status, f"{stage['wall_seconds']:.1f}", f"{stage['cpu_seconds']:.1f}")
    console.print(table)
    console.print(f"report card: {result['report']}")
    console.print(f"MLflow pipeline run: {result['mlflow_run_id']}")


def join_training(config) -> None:
    """This node's part of the pipeline's multi-node pretraining (no flow: node 0 runs it)."""
    from fineforge.flows.pipeline_node import NodeWaitTimeout, join_pretrain
    from fineforge.tasks.training.launch import TorchrunError

    try:
        join_pretrain(config)
    except NodeWaitTimeout as e:
        fail(str(e), code=1)
    except TorchrunError as e:
        fail(str(e).splitlines()[0], code=1)  # the whole log was streamed above
    console.print(f"node {config.pretrain.launch.node_rank}: training complete ({config.run_dir})")
