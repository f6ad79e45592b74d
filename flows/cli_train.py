"""`fineforge train ...` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fineforge.flows.cli_config import Config, merged_values, read_config_file
from fineforge.flows.cli_output import console, fail, validation_message

if TYPE_CHECKING:
    from pydantic import BaseModel

# The launch options every training command shares.
NprocPerNode = Annotated[int, typer.Option("--nproc-per-node", "-n", help="Processes (GPUs) on this node.")]
TorchrunArgs = Annotated[list[str], typer.Option("--torchrun-arg", help="Further torchrun argument (repeatable).")]
Retries = Annotated[int, typer.Option(help="Relaunches after a failure, each resuming from the newest checkpoint.")]
MlflowUri = Annotated[str, typer.Option(help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite).")]


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
    data: str = typer.Option(None, "--data", "-d", help="Token shards folder (with manifest.json), or the "
                             "committed shards in an object store (s3://.../tokens/NAME)."),
    run_dir: str = typer.Option(None, "--run-dir", "-o", help="Checkpoints, metrics and samples go here (a folder, "
                                "or s3://...: staged locally, checkpoints pushed as they are saved)."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON file of trainer fields; options override."),
    preset: str = typer.Option(None, "--model", "-m", help="Model preset: tiny, small-cpu, gpt2-124m, ..."),
    max_steps: int = typer.Option(None, help="Optimizer steps."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding (gpt2, cl100k_base, "
                                       "o200k_base; default $FINEFORGE_TOKENIZER_DIR)."),
    settings: list[str] = typer.Option(None, "--set", help="Any trainer field, e.g. --set lr=6e-4 (repeatable)."),
    nproc_per_node: NprocPerNode = 1,
    nnodes: int = typer.Option(1, help="Nodes of the run; more than 1 needs --rdzv-endpoint."),
    node_rank: int = typer.Option(0, help="This node's index; nodes other than 0 only run torchrun."),
    rdzv_endpoint: str = typer.Option(None, help="host:port of the rendezvous, the same on every node."),
    rdzv_id: str = typer.Option("fineforge", help="Id of this run's rendezvous, the same on every node."),
    torchrun_args: list[str] = typer.Option(None, "--torchrun-arg", help="Further torchrun argument, e.g. "
                                            "--torchrun-arg=--max-restarts=3 (repeatable)."),
    retries: Retries = 2,
    mlflow_uri: MlflowUri = None,
) -> None:
    """Pretrain a GPT on token shards under torchrun (Prefect flow `pretrain`)."""
    from fineforge.flows.pretrain_config import PretrainFlowConfig
    from fineforge.model.pretrain import PretrainConfig

    paths = {"data_dir": data, "run_dir": run_dir, "tokenizer_dir": tokenizer_dir}
    values = trainer_values(config_file, {**paths, "model": preset, "max_steps": max_steps}, settings,
                            {"data_dir": "--data", "run_dir": "--run-dir"})
    launch = {"nproc_per_node": nproc_per_node, "nnodes": nnodes, "node_rank": node_rank, "retries": retries,
              "rdzv_endpoint": rdzv_endpoint, "rdzv_id": rdzv_id, "launcher_args": torchrun_args or []}
    flow_config = checked_flow_config(PretrainConfig, PretrainFlowConfig, values, launch, mlflow_uri)
    run_training_flow("fineforge.flows.pretrain:pretrain", "fineforge.model.pretrain", flow_config, "pretraining")


@train_app.command("sft")
def sft_command(
    init: Path = typer.Option(None, "--init", "-i", help="The checkpoint to start from: a checkpoint folder, or a "
                              "run folder (its newest checkpoint), of pretraining or SFT."),
    data: Path = typer.Option(None, "--data", "-d", help="Conversation shards (`fineforge conversations build`)."),
    conversations: Path = typer.Option(None, "--conversations", help="A conversations config (JSON) to build "
                                       "first; --data defaults to its folder."),
    run_dir: Path = typer.Option(None, "--run-dir", "-o", help="Checkpoints, metrics and samples go here."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON file of SFT fields; options override."),
    max_steps: int = typer.Option(None, help="Optimizer steps."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding (gpt2, cl100k_base, "
                                       "o200k_base; default $FINEFORGE_TOKENIZER_DIR)."),
    settings: list[str] = typer.Option(None, "--set", help="Any SFT field, e.g. --set lr=3e-5 (repeatable)."),
    nproc_per_node: NprocPerNode = 1,
    torchrun_args: TorchrunArgs = None,
    retries: Retries = 2,
    mlflow_uri: MlflowUri = None,
) -> None:
    """Fine-tune a checkpoint on conversations, the loss on the assistant's tokens, under torchrun (Prefect flow
    `sft`)."""
    from pydantic import ValidationError

    from fineforge.flows.sft_config import SFTFlowConfig, defaults_from_conversations
    from fineforge.model.sft import SFTConfig
    from fineforge.tasks.conversations.config import ConversationsConfig

    options = {"init_checkpoint": init, "data_dir": data, "run_dir": run_dir, "tokenizer_dir": tokenizer_dir,
               "max_steps": max_steps}
    values = trainer_values(config_file, options, settings, {"init_checkpoint": "--init", "run_dir": "--run-dir"})
    build = None
    if conversations is not None:
        try:
            build = ConversationsConfig.model_validate(read_config_file(conversations))
        except ValidationError as e:
            fail(refusal_message(e))
        values = defaults_from_conversations(values, build)
    elif "data_dir" not in values:
        fail("--data or --conversations is required (or 'data_dir' in the config file)")
    launch = single_node_launch(nproc_per_node, retries, torchrun_args)
    flow_config = checked_flow_config(SFTConfig, SFTFlowConfig, values, launch, mlflow_uri, conversations=build)
    run_training_flow("fineforge.flows.sft:sft", "fineforge.model.sft", flow_config, "sft")


@train_app.command("rl")
@train_app.command("rlhf", help="RLHF: `train rl` with the rewards from --reward-model, a KL penalty to the SFT "
                   "reference (--set kl_beta=..., kl_target=... adapts it) and the reward-hacking watch "
                   "(--set watch_window=...), judged by --judge-model or the verifier.")
def rl_command(
    ctx: typer.Context,
    checkpoint: Path = typer.Option(None, "--checkpoint", help="The policy to start from: an SFT checkpoint or run "
                                    "folder (its newest checkpoint)."),
    prompts: Path = typer.Option(None, "--prompts", "-p", help="JSONL prompts with answers (the conversation "
                                 "stage's train.jsonl, GSM8K lines)."),
    eval_prompts: Path = typer.Option(None, "--eval-prompts", help="Held-out JSONL prompts: pass@1 and pass@k "
                                      "every eval_every steps."),
    verifier: str = typer.Option(None, "--verifier", help="gsm8k, word_problems, letter_count, or "
                                 "package.module:attribute (default gsm8k; rlhf: none, or the watch's judge)."),
    reward_model: Path = typer.Option(None, "--reward-model", help="RLHF: a reward model (`fineforge train reward`) "
                                      "gives the rewards."),
    judge_model: Path = typer.Option(None, "--judge-model", help="RLHF: a second reward model, the watch's judge."),
    run_dir: Path = typer.Option(None, "--run-dir", "-o", help="Checkpoints, metrics and samples go here."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON file of RL fields; options override."),
    max_steps: int = typer.Option(None, help="Optimizer steps."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding (gpt2, cl100k_base, "
                                       "o200k_base; default $FINEFORGE_TOKENIZER_DIR)."),
    settings: list[str] = typer.Option(None, "--set", help="Any RL field, e.g. --set samples_per_prompt=16 "
                                       "(repeatable)."),
    nproc_per_node: NprocPerNode = 1,
    torchrun_args: TorchrunArgs = None,
    retries: Retries = 2,
    mlflow_uri: MlflowUri = None,
) -> None:
    """Reinforce a chat model's verified answers (GRPO) under torchrun (Prefect flow `rl`)."""
    from fineforge.flows.rl_config import RLFlowConfig
    from fineforge.model.rl.stage_config import RLConfig

    options = {"init_checkpoint": checkpoint, "prompts": prompts, "eval_prompts": eval_prompts, "verifier": verifier,
               "reward_model": reward_model, "judge_model": judge_model, "run_dir": run_dir,
               "tokenizer_dir": tokenizer_dir, "max_steps": max_steps}
    required = {"init_checkpoint": "--checkpoint", "prompts": "--prompts", "run_dir": "--run-dir"}
    rlhf = ctx.info_name == "rlhf"
    values = trainer_values(config_file, options, settings, {**required, **({"reward_model": "--reward-model"}
                                                                            if rlhf else {})})
    if rlhf:
        values.setdefault("verifier", None)  # RLHF prompts need no answers unless a verifier judges
    launch = single_node_launch(nproc_per_node, retries, torchrun_args)
    flow_config = checked_flow_config(RLConfig, RLFlowConfig, values, launch, mlflow_uri)
    run_training_flow("fineforge.flows.rl:rl", "fineforge.model.rl", flow_config, "rl")


@train_app.command("reward")
def reward_command(
    data: Path = typer.Option(None, "--data", "-d", help="Preference set folder (`fineforge reward pairs`)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="The trunk: an SFT (or pretrained) checkpoint or "
                                    "run folder (its newest checkpoint)."),
    run_dir: Path = typer.Option(None, "--run-dir", "-o", help="Checkpoints, metrics and samples go here."),
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON file of trainer fields; options override."),
    max_steps: int = typer.Option(None, help="Optimizer steps."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding (gpt2, cl100k_base, "
                                       "o200k_base; default $FINEFORGE_TOKENIZER_DIR)."),
    settings: list[str] = typer.Option(None, "--set", help="Any trainer field, e.g. --set margin=0.5 (repeatable)."),
    nproc_per_node: NprocPerNode = 1,
    torchrun_args: TorchrunArgs = None,
    retries: Retries = 2,
    mlflow_uri: MlflowUri = None,
) -> None:
    """Train a reward model (the trunk + a scalar head, Bradley-Terry) under torchrun (Prefect flow `reward_model`)."""
    from fineforge.flows.reward_model_config import RewardModelFlowConfig
    from fineforge.model.reward import RewardConfig

    paths = {"data_dir": data, "init_checkpoint": checkpoint, "run_dir": run_dir, "tokenizer_dir": tokenizer_dir}
    values = trainer_values(config_file, {**paths, "max_steps": max_steps}, settings,
                            {"data_dir": "--data", "init_checkpoint": "--checkpoint", "run_dir": "--run-dir"})
    launch = single_node_launch(nproc_per_node, retries, torchrun_args)
    flow_config = checked_flow_config(RewardConfig, RewardModelFlowConfig, values, launch, mlflow_uri)
    run_training_flow("fineforge.flows.reward_model:reward_model", "fineforge.model.reward", flow_config,
                      "reward model")


def trainer_values(config_file: Path | None, options: dict, settings: list[str] | None,
                   required: dict[str, str]) -> dict:
    """A stage's fields from the config file, then the options given (paths as text), then the `--set`s; a
    `required` field (name -> its option) given nowhere fails naming the option."""
    values = merged_values(read_config_file(config_file), options)
    values.update(parse_settings(settings or []))  # after the merge: `--set top_k=null` sets None
    for name, flag in required.items():
        if name not in values:
            fail(f"{flag} is required (or {name!r} in the config file)")
    return values


def single_node_launch(nproc_per_node: int, retries: int, torchrun_args: list[str] | None) -> dict:
    """The launch fields of a one-node training command."""
    return {"nproc_per_node": nproc_per_node, "retries": retries, "launcher_args": torchrun_args or []}


def checked_flow_config(config_type: type, flow_config_type: type[Config], values: dict, launch: dict,
                        mlflow_uri: str | None, **fields) -> Config:
    """The flow's config (with its other `fields`) after every check of the stage (data, tokenizer, checkpoint,
    batch arithmetic) and of the launch, or one error line and exit 2: nothing has started."""
    from pydantic import ValidationError

    from fineforge.model.config import ConfigError, config_from_dict
    from fineforge.tasks.training.launch import LaunchConfig

    try:
        config = config_from_dict(config_type, values)
        return flow_config_type(train=config, launch=LaunchConfig(**launch), mlflow_tracking_uri=mlflow_uri,
                                **fields)
    except ConfigError as e:
        fail(str(e))
    except ValidationError as e:
        fail(refusal_message(e))


def run_training_flow(flow_path: str, module: str, flow_config: BaseModel, title: str) -> None:
    """Run the training flow `flow_path` ("package.module:flow") on node 0, only torchrun on the other nodes
    (node 0's flow owns the Prefect run; global rank 0 the MLflow run); print the result as a table."""
    from dataclasses import asdict
    from importlib import import_module

    from fineforge.flows.runtime import prepare_runtime

    config, launch = flow_config.train, flow_config.launch
    prepare_runtime(Path(config.run_dir), lock=launch.node_rank == 0)  # before Prefect; other nodes share the dir
    from fineforge.tasks.training.launch import TorchrunError, launch_training

    try:
        if launch.node_rank > 0:
            node_config = Path(config.run_dir) / f"{module.rsplit('.', 1)[-1]}_config.node{launch.node_rank}.json"
            launch_training(module, asdict(config), node_config, launch)
            return
        module_name, flow_name = flow_path.split(":")
        result = getattr(import_module(module_name), flow_name)(flow_config)
    except TorchrunError as e:
        fail(str(e).splitlines()[0], code=1)  # the whole log was streamed above
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
