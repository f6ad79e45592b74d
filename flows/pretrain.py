"""The `pretrain` flow: launch the trainer under torchrun (retried, resuming), record its lineage, publish the
summary."""

import contextlib
from pathlib import Path

from prefect import flow

from fineforge.flows.pretrain_config import PretrainFlowConfig
from fineforge.flows.training import publish_summary, train_under_torchrun
from fineforge.tasks.tracking import log_token_dataset, register_checkpoint
from fineforge.tasks.training.run_store import CheckpointPusher

CONFIG_FILE = "pretrain_config.json"
MODEL_ALIAS = "latest-pretrain"


def record_lineage(config: PretrainFlowConfig, result: dict) -> None:
    """The token shards as the training run's MLflow input; its final checkpoint registered as a model version."""
    uri, run_id = result["mlflow_tracking_uri"], result["mlflow_run_id"]
    if run_id is None:
        return
    log_token_dataset(uri, run_id, Path(config.train.data_dir))
    if config.registered_model and result.get("checkpoint"):
        register_checkpoint(uri, run_id, config.registered_model, MODEL_ALIAS)


def published_run(config: PretrainFlowConfig) -> contextlib.AbstractContextManager:
    """Pushes the run folder's checkpoints to `run_uri` while training (nothing for a local run folder)."""
    if config.run_uri is None:
        return contextlib.nullcontext()
    return CheckpointPusher(Path(config.train.run_dir), config.run_uri)


@flow(name="pretrain", description="Pretrain a GPT on token shards under torchrun, tracked in MLflow.")
def pretrain(config: PretrainFlowConfig) -> dict:
    """Run the trainer to completion; a failed launch is retried and resumes from the newest checkpoint. With
    `run_uri`, each checkpoint is pushed to the object store as it is saved, and the run folder when it ends."""
    with published_run(config):
        result = train_under_torchrun("fineforge.model.pretrain", config.train, config.launch,
                                      config.mlflow_tracking_uri, CONFIG_FILE)
        record_lineage(config, result)
    publish_summary(result, "pretrain-summary")
    return result
