"""The `pretrain` flow: launch the trainer under torchrun (retried, resuming), publish the summary."""

import json
from dataclasses import asdict
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from fineforge.flows.lineage import prefect_run_tags
from fineforge.flows.pretrain_config import PretrainFlowConfig
from fineforge.model.tracking import TRACKING_URI_ENV, recorded_run, settle_run
from fineforge.model.trainer import SUMMARY_FILE
from fineforge.tasks.tracking import log_token_dataset, register_checkpoint, tag_run, tracking_uri
from fineforge.tasks.training.torchrun import torchrun_task

CONFIG_FILE = "pretrain_config.json"
MODEL_ALIAS = "latest-pretrain"


def record_lineage(config: PretrainFlowConfig, uri: str, run_id: str, summary: dict) -> None:
    """Link the training run to what made it and what it read (the Prefect flow run, the token shards) and
    register its final checkpoint as a model version."""
    tag_run(uri, run_id, prefect_run_tags())
    log_token_dataset(uri, run_id, Path(config.train.data_dir))
    if config.registered_model and summary.get("checkpoint"):
        register_checkpoint(uri, run_id, config.registered_model, MODEL_ALIAS)


@flow(name="pretrain", description="Pretrain a GPT on token shards under torchrun, tracked in MLflow.")
def pretrain(config: PretrainFlowConfig) -> dict:
    """Run the trainer to completion; a failed launch is retried and resumes from the newest checkpoint.

    The trainer keeps the run's MLflow run (continued on resume); if the job is given up on, a run its
    killed workers left RUNNING is marked FAILED."""
    train = config.train
    run_dir = Path(train.run_dir).resolve()
    uri = tracking_uri(run_dir, config.mlflow_tracking_uri) if train.use_mlflow else None
    env = {TRACKING_URI_ENV: uri} if uri else {}
    try:
        torchrun_task.with_options(retries=config.launch.retries)(
            "fineforge.model.pretrain", asdict(train), str(run_dir / CONFIG_FILE), config.launch, env
        )
    except BaseException:
        if uri:
            settle_run(run_dir, "FAILED", uri)
        raise
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    record = recorded_run(run_dir) if uri else None
    run_id = record["run_id"] if record else None
    if run_id:
        record_lineage(config, uri, run_id, summary)
    lines = [f"| {k} | {v} |" for k, v in summary.items()]
    create_markdown_artifact("| | |\n|---|---|\n" + "\n".join(lines) + f"\n\nMLflow run: `{run_id}` at `{uri}`",
                             key="pretrain-summary")
    return {**summary, "mlflow_run_id": run_id}
