"""The `reward_model` flow: train a reward model on a preference set under torchrun (retried, resuming), publish
its held-out accuracy with the preference set's counts, and keep the set's manifest with the MLflow run."""

from pathlib import Path

from prefect import flow

from fineforge.flows.reward_model_config import RewardModelFlowConfig
from fineforge.flows.training import publish_summary, train_under_torchrun
from fineforge.model.preference_data import load_preference_manifest

CONFIG_FILE = "reward_config.json"


@flow(name="reward_model", description="Train a reward model (GPT trunk + scalar head, Bradley-Terry) on ranked "
      "completions under torchrun, tracked in MLflow.")
def reward_model(config: RewardModelFlowConfig) -> dict:
    """Run the reward stage to completion; a failed launch is retried and resumes from the newest checkpoint."""
    manifest = load_preference_manifest(config.train.data_dir, verify=False)
    result = train_under_torchrun("fineforge.model.reward", config.train, config.launch, config.mlflow_tracking_uri,
                                  CONFIG_FILE)
    counts = {f"{split} {kind}": n for split, by_kind in manifest["counts"].items() for kind, n in by_kind.items()}
    publish_summary(result, "reward-model-summary", counts)
    if result["mlflow_run_id"]:
        from mlflow.tracking import MlflowClient

        MlflowClient(result["mlflow_tracking_uri"]).log_dict(result["mlflow_run_id"], manifest,
                                                             "preference_set/manifest.json")
    return {**result, "preference_set": str(Path(config.train.data_dir).resolve())}
