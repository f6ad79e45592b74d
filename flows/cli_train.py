"""`fineforge train ...` commands: each merges its options into a stage config, checks the flow config before
anything starts, and runs the stage's Prefect flow. The options every command shares are defined once here."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.table import Table

from fineforge.flows.cli_config import merged_values, read_config_file
from fineforge.flows.cli_output import console, fail, validation_message

train_app = typer.Typer(no_args_is_help=True)

T = TypeVar("T")

# The options of every `train` command (typer reads them from the parameters' defaults).
RUN_DIR = typer.Option(None, "--run-dir", "-o", help="Checkpoints, metrics and samples go here.")
CONFIG_FILE = typer.Option(None, "--config", "-c", help="JSON file of trainer fields; options override.")
MAX_STEPS = typer.Option(None, help="Optimizer steps.")
TOKENIZER_DIR = typer.Option(None, help="Vocabulary files of a published encoding (gpt2, cl100k_base, o200k_base; "
                             "default $FINEFORGE_TOKENIZER_DIR).")
SETTINGS = typer.Option(None, "--set", help="Any trainer field, e.g. --set lr=6e-4 (repeatable).")
NPROC_PER_NODE = typer.Option(1, "--nproc-per-node", "-n", help="Processes (GPUs) on this node.")
NNODES = typer.Option(1, help="Nodes of the run; more than 1 needs --rdzv-endpoint.")
NODE_RANK = typer.Option(0, help="This node's index; nodes other than 0 only run torchrun.")
RDZV_ENDPOINT = typer.Option(None, help="host:port of the rendezvous, the same on every node.")
RDZV_ID = typer.Option("fineforge", help="Id of this run's rendezvous, the same on every node.")
TORCHRUN_ARGS = typer.Option(None, "--torchrun-arg", help="Further torchrun argument, e.g. "
                             "--torchrun-arg=--max-restarts=3 (repeatable).")
RETRIES = typer.Option(2, help="Relaunches after a failure, each resuming from the newest checkpoint.")
MLFLOW_URI = typer.Option(None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite).")


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


def trainer_values(config_file: Path | None, options: dict[str, Any], settings: list[str] | None,
                   required: dict[str, str]) -> dict:
    """A stage's fields: the config file's, overridden by the options given, then by `--set` (a dotted name sets a
    nested value); `required` maps the fields that must end up set to the option that sets them."""
    values = merged_values(read_config_file(config_file), {**options, **parse_settings(settings or [])})
    for name, flag in required.items():
        if name not in values:
            fail(f"{flag} is required (or {name!r} in the config file)")
    return values


def checked(build: Callable[[], T]) -> T:
    """`build()` (the configs of a run, validated with every pre-launch check), or its one error line and exit 2."""
    from pydantic import ValidationError

    from fineforge.model.config import ConfigError

    try:
        return build()
    except ConfigError as e:
        fail(str(e))
    except ValidationError as e:
        fail(refusal_message(e))


def launch_config(nproc_per_node: int, nnodes: int, node_rank: int, rdzv_endpoint: str | None, rdzv_id: str,
                  torchrun_args: list[str] | None, retries: int):
    """The LaunchConfig of the launch options (raises pydantic's ValidationError for a bad one)."""
    from fineforge.tasks.training.launch import LaunchConfig

    return LaunchConfig(nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank, retries=retries,
                        rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id, launcher_args=torchrun_args or [])


def run_training(flow: str, module: str, flow_config, title: str) -> None:
    """Run the flow `flow` ("package.module:function") on node 0, or only torchrun on the other nodes, and print
    the run's summary. Prefect is imported here, after the run folder's runtime is prepared."""
    from dataclasses import asdict

    from fineforge.flows.runtime import prepare_runtime

    train, launch = flow_config.train, flow_config.launch
    prepare_runtime(Path(train.run_dir))
    from fineforge.tasks.training.launch import TorchrunError, launch_training

    try:
        if launch.node_rank > 0:  # node 0's flow owns the Prefect run; global rank 0 the MLflow run
            node_config = Path(train.run_dir) / f"{title}_config.node{launch.node_rank}.json"
            launch_training(module, asdict(train), node_config, launch)
            return
        module_name, function = flow.split(":")
        result = getattr(importlib.import_module(module_name), function)(flow_config)
    except TorchrunError as e:
        fail(str(e).splitlines()[0], code=1)  # the whole log was streamed above
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@train_app.command("pretrain")
def pretrain_command(
    data: Path = typer.Option(None, "--data", "-d", help="Token shards folder (with manifest.json)."),
    run_dir: Path = RUN_DIR,
    config_file: Path = CONFIG_FILE,
    preset: str = typer.Option(None, "--model", "-m", help="Model preset: tiny, small-cpu, gpt2-124m, ..."),
    max_steps: int = MAX_STEPS,
    tokenizer_dir: Path = TOKENIZER_DIR,
    settings: list[str] = SETTINGS,
    nproc_per_node: int = NPROC_PER_NODE,
    nnodes: int = NNODES,
    node_rank: int = NODE_RANK,
    rdzv_endpoint: str = RDZV_ENDPOINT,
    rdzv_id: str = RDZV_ID,
    torchrun_args: list[str] = TORCHRUN_ARGS,
    retries: int = RETRIES,
    mlflow_uri: str = MLFLOW_URI,
) -> None:
    """Pretrain a GPT on token shards under torchrun (Prefect flow `pretrain`)."""
    from fineforge.flows.pretrain_config import PretrainFlowConfig
    from fineforge.model.config import config_from_dict
    from fineforge.model.pretrain import PretrainConfig

    options = {"data_dir": data, "run_dir": run_dir, "tokenizer_dir": tokenizer_dir, "model": preset,
               "max_steps": max_steps}
    values = trainer_values(config_file, options, settings, {"data_dir": "--data", "run_dir": "--run-dir"})
    flow_config = checked(lambda: PretrainFlowConfig(
        train=config_from_dict(PretrainConfig, values), mlflow_tracking_uri=mlflow_uri,
        launch=launch_config(nproc_per_node, nnodes, node_rank, rdzv_endpoint, rdzv_id, torchrun_args, retries),
    ))  # fmt: skip
    run_training("fineforge.flows.pretrain:pretrain", "fineforge.model.pretrain", flow_config, "pretrain")


@train_app.command("reward")
def reward_command(
    data: Path = typer.Option(None, "--data", "-d", help="Preference set folder (`fineforge reward pairs`)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="The trunk: an SFT (or pretrained) checkpoint or "
                                    "run folder (its newest checkpoint)."),
    run_dir: Path = RUN_DIR,
    config_file: Path = CONFIG_FILE,
    max_steps: int = MAX_STEPS,
    tokenizer_dir: Path = TOKENIZER_DIR,
    settings: list[str] = SETTINGS,
    nproc_per_node: int = NPROC_PER_NODE,
    nnodes: int = NNODES,
    node_rank: int = NODE_RANK,
    rdzv_endpoint: str = RDZV_ENDPOINT,
    rdzv_id: str = RDZV_ID,
    torchrun_args: list[str] = TORCHRUN_ARGS,
    retries: int = RETRIES,
    mlflow_uri: str = MLFLOW_URI,
) -> None:
    """Train a reward model (the trunk + a scalar head, Bradley-Terry) under torchrun (Prefect flow `reward_model`)."""
    from fineforge.flows.reward_model_config import RewardModelFlowConfig
    from fineforge.model.config import config_from_dict
    from fineforge.model.reward import RewardConfig

    options = {"data_dir": data, "init_checkpoint": checkpoint, "run_dir": run_dir, "tokenizer_dir": tokenizer_dir,
               "max_steps": max_steps}
    values = trainer_values(config_file, options, settings,
                            {"data_dir": "--data", "init_checkpoint": "--checkpoint", "run_dir": "--run-dir"})
    flow_config = checked(lambda: RewardModelFlowConfig(
        train=config_from_dict(RewardConfig, values), mlflow_tracking_uri=mlflow_uri,
        launch=launch_config(nproc_per_node, nnodes, node_rank, rdzv_endpoint, rdzv_id, torchrun_args, retries),
    ))  # fmt: skip
    run_training("fineforge.flows.reward_model:reward_model", "fineforge.model.reward", flow_config, "reward")
