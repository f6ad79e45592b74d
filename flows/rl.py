"""The `rl` flow: reinforce a chat model's verified answers under torchrun (retried, resuming), publish the summary."""

from prefect import flow

from fineforge.flows.rl_config import RLFlowConfig
from fineforge.flows.training import publish_summary, train_under_torchrun

CONFIG_FILE = "rl_config.json"
SUMMARY_ARTIFACT = "rl-summary"


@flow(name="rl", description="Reinforcement learning on verifiable answers (GRPO): sample replies, reward the "
      "verified ones, under torchrun, tracked in MLflow.")
def rl(config: RLFlowConfig) -> dict:
    """Train to completion; a failed launch is retried and resumes from the newest checkpoint (roll-outs included)."""
    train = config.train
    result = train_under_torchrun("fineforge.model.rl", train, config.launch, config.mlflow_tracking_uri, CONFIG_FILE)
    publish_summary(result, SUMMARY_ARTIFACT, {"init_checkpoint": train.init_checkpoint, "prompts": train.prompts,
                                               "eval_prompts": train.eval_prompts, "verifier": train.verifier})
    return result
