"""The one config of the `reward_model` flow (rendered by Prefect as the run form), checked before any launch.

Kept apart from the flow so that the CLI can check a run before Prefect is imported.
"""

from pydantic import BaseModel, Field, model_validator

from fineforge.model.reward import RewardConfig, RewardStage
from fineforge.model.trainer import check_launch
from fineforge.tasks.training.launch import LaunchConfig


class RewardModelFlowConfig(BaseModel):
    """One reward-model run: what to train (the stage's own config) and how to launch it."""

    train: RewardConfig
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    mlflow_tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else SQLite in run_dir.")

    @model_validator(mode="after")
    def _check_launch(self) -> "RewardModelFlowConfig":
        """What the workers would refuse, refused here: the trainer's fields, the trunk checkpoint and its tokenizer
        (chat tokens included), the preference set (same tokenizer, rows within the context, held-out rankings),
        the batch arithmetic for the launch's world size, a checkpoint of another shape in the run folder."""
        check_launch(RewardStage(self.train), self.launch.world_size)
        return self
