"""The `pretrain` flow: create the MLflow run, launch torchrun (retried, resuming), publish the summary."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from fineforge.model.pretrain import SUMMARY_FILE, PretrainConfig
from fineforge.model.tracking import RUN_ID_ENV, TRACKING_URI_ENV
from fineforge.tasks.tracking import close_mlflow_run, open_mlflow_run, tracking_uri
from fineforge.tasks.training.torchrun import LaunchConfig, torchrun_task

CONFIG_FILE = "pretrain_config.json"


class PretrainFlowConfig(BaseModel):
    """One pretraining run: what to train (the trainer's own config) and how to launch it."""

    train: PretrainConfig
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    mlflow_tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else SQLite in run_dir.")


@flow(name="pretrain", description="Pretrain a GPT on token shards under torchrun, tracked in MLflow.")
def pretrain(config: PretrainFlowConfig) -> dict:
    """Run the trainer to completion; a failed launch is retried and resumes from the newest checkpoint."""
    train = config.train
    run_dir = Path(train.run_dir).resolve()
    env: dict[str, str] = {}
    uri = run_id = None
    if train.use_mlflow:
        uri = tracking_uri(run_dir, config.mlflow_tracking_uri)
        run_id = open_mlflow_run(uri, train.experiment, run_dir.name, {"fineforge.stage": "pretrain"})
        env = {TRACKING_URI_ENV: uri, RUN_ID_ENV: run_id}
    try:
        torchrun_task.with_options(retries=config.launch.retries)(
            "fineforge.model.pretrain", asdict(train), str(run_dir / CONFIG_FILE), config.launch, env
        )
    except BaseException:
        if run_id:
            close_mlflow_run(uri, run_id, "FAILED")
        raise
    if run_id:
        close_mlflow_run(uri, run_id, "FINISHED")
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    lines = [f"| {k} | {v} |" for k, v in summary.items()]
    create_markdown_artifact("| | |\n|---|---|\n" + "\n".join(lines) + f"\n\nMLflow run: `{run_id}` at `{uri}`",
                             key="pretrain-summary")
    return {**summary, "mlflow_run_id": run_id}
