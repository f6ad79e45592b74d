"""`fineforge train ...` commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_output import console, fail, validation_message

train_app = typer.Typer(no_args_is_help=True)


def parse_settings(settings: list[str]) -> dict:
    """`field=value` pairs; a value is read as JSON when it parses (numbers, booleans, lists), else as text."""
    values = {}
    for item in settings:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            fail(f"--set expects field=value, got {item!r}")
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    return values


def refusal_message(error) -> str:
    """One line for a refused flow config: a failed trainer check's own message (it names the field), else
    pydantic's, per field."""
    from fineforge.model.config import ConfigError

    causes = [e["ctx"]["error"] for e in error.errors() if isinstance(e.get("ctx", {}).get("error"), ConfigError)]
    return str(causes[0]) if causes else validation_message(error)


@train_app.command("pretrain")
def pretrain_command(
    data: Path = typer.Option(None, "--data", "-d", help="Token shards folder (with manifest.json)."),
    run_dir: Path = typer.Option(None, "--run-dir", "-o", help="Checkpoints, metrics and samples go here."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON file of trainer fields; options override."),
    preset: str = typer.Option(None, "--model", "-m", help="Model preset: tiny, small-cpu, gpt2-124m, ..."),
    max_steps: int = typer.Option(None, help="Optimizer steps."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding (gpt2, cl100k_base, "
                                       "o200k_base; default $FINEFORGE_TOKENIZER_DIR)."),
    settings: list[str] = typer.Option(None, "--set", help="Any trainer field, e.g. --set lr=6e-4 (repeatable)."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", "-n", help="Processes (GPUs) on this node."),
    nnodes: int = typer.Option(1, help="Nodes of the run; more than 1 needs --rdzv-endpoint."),
    node_rank: int = typer.Option(0, help="This node's index; nodes other than 0 only run torchrun."),
    rdzv_endpoint: str = typer.Option(None, help="host:port of the rendezvous, the same on every node."),
    rdzv_id: str = typer.Option("fineforge", help="Id of this run's rendezvous, the same on every node."),
    torchrun_args: list[str] = typer.Option(None, "--torchrun-arg", help="Further torchrun argument, e.g. "
                                            "--torchrun-arg=--max-restarts=3 (repeatable)."),
    retries: int = typer.Option(2, help="Relaunches after a failure, each resuming from the newest checkpoint."),
    mlflow_uri: str = typer.Option(None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite)."),
) -> None:
    """Pretrain a GPT on token shards under torchrun (Prefect flow `pretrain`)."""
    from dataclasses import asdict

    from pydantic import ValidationError

    from fineforge.flows.pretrain_config import PretrainFlowConfig
    from fineforge.model.config import ConfigError, config_from_dict
    from fineforge.model.pretrain import PretrainConfig
    from fineforge.tasks.training.launch import LaunchConfig

    values: dict = {}
    if config_file is not None:
        try:
            values = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            fail(f"cannot read config file {config_file}: {e}")
        if not isinstance(values, dict):
            fail(f"config file {config_file}: expected a JSON object of trainer fields")
    paths = {"data_dir": data, "run_dir": run_dir, "tokenizer_dir": tokenizer_dir}
    options = {**{k: str(v) for k, v in paths.items() if v is not None}, "model": preset, "max_steps": max_steps}
    values.update({k: v for k, v in options.items() if v is not None})
    values.update(parse_settings(settings or []))
    for required, flag in (("data_dir", "--data"), ("run_dir", "--run-dir")):
        if required not in values:
            fail(f"{flag} is required (or {required!r} in the config file)")
    try:  # every check of the flow config (data, tokenizer, batch arithmetic, ...) before anything starts
        config = config_from_dict(PretrainConfig, values)
        launch = LaunchConfig(nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank, retries=retries,
                              rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id, launcher_args=torchrun_args or [])
        flow_config = PretrainFlowConfig(train=config, launch=launch, mlflow_tracking_uri=mlflow_uri)
    except ConfigError as e:
        fail(str(e))
    except ValidationError as e:
        fail(refusal_message(e))

    from fineforge.flows.runtime import prepare_runtime

    prepare_runtime(Path(config.run_dir), lock=launch.node_rank == 0)  # the other nodes share node 0's run dir
    from fineforge.flows.pretrain import pretrain
    from fineforge.tasks.training.launch import TorchrunError, launch_training

    try:
        if launch.node_rank > 0:  # node 0's flow owns the Prefect run; global rank 0 the MLflow run
            node_config = Path(config.run_dir) / f"pretrain_config.node{launch.node_rank}.json"
            launch_training("fineforge.model.pretrain", asdict(config), node_config, launch)
            return
        result = pretrain(flow_config)
    except TorchrunError as e:
        fail(str(e).splitlines()[0], code=1)  # the whole log was streamed above
    table = Table(title="pretraining")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
