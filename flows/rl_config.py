"""The one config of the `rl` flow (rendered by Prefect as the run form), checked before any launch.

Kept apart from the flow, and free of Prefect imports, so that the CLI can check a run before Prefect is imported.
"""

from pydantic import BaseModel, Field, model_validator

from fineforge.model.rl.stage import RLStage
from fineforge.model.rl.stage_config import RLConfig
from fineforge.model.trainer import check_launch
from fineforge.tasks.training.launch import LaunchConfig


class RLFlowConfig(BaseModel):
    """One RL run on verifiable answers: what to train (the stage's own config) and how to launch it."""

    train: RLConfig
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    mlflow_tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else SQLite in run_dir.")

    @model_validator(mode="after")
    def _check_launch(self) -> "RLFlowConfig":
        """What the workers would refuse, refused here: the trainer's fields, the checkpoint and its tokenizer, the
        verifier, every prompt's answer and length, the reference, the batch arithmetic for the launch's world size,
        a checkpoint of another shape or prompt set in run_dir."""
        check_launch(RLStage(self.train), self.launch.world_size)
        return self
