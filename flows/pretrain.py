"""The `pretrain` flow: launch the trainer under torchrun (retried, resuming), publish the summary."""

from prefect import flow

from fineforge.flows.pretrain_config import PretrainFlowConfig
from fineforge.flows.training import publish_summary, train_under_torchrun

CONFIG_FILE = "pretrain_config.json"


@flow(name="pretrain", description="Pretrain a GPT on token shards under torchrun, tracked in MLflow.")
def pretrain(config: PretrainFlowConfig) -> dict:
    """Run the trainer to completion; a failed launch is retried and resumes from the newest checkpoint."""
    result = train_under_torchrun("fineforge.model.pretrain", config.train, config.launch, config.mlflow_tracking_uri,
                                  CONFIG_FILE)
    publish_summary(result, "pretrain-summary")
    return result
