"""The one config of the `pretrain` flow (rendered by Prefect as the run form), checked before any launch.

Kept apart from the flow so that the CLI can check a run before Prefect is imported.
"""

from pydantic import BaseModel, Field, model_validator

from fineforge.model.pretrain import PretrainConfig, PretrainStage
from fineforge.model.trainer import check_launch
from fineforge.tasks.training.launch import LaunchConfig


class PretrainFlowConfig(BaseModel):
    """One pretraining run: what to train (the trainer's own config) and how to launch it."""

    train: PretrainConfig
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    mlflow_tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else SQLite in run_dir.")
    registered_model: str | None = Field(
        None, description="Register the final checkpoint as a version of this MLflow model, alias latest-pretrain."
    )

    @model_validator(mode="after")
    def _check_launch(self) -> "PretrainFlowConfig":
        """What the workers would refuse, refused here: the trainer's fields, shards, tokenizer, that each split
        holds a batch, the batch arithmetic for the launch's world size, a checkpoint of another shape."""
        check_launch(PretrainStage(self.train), self.launch.world_size)
        return self
