"""The one config of the `pretrain` flow (rendered by Prefect as the run form), checked before any launch.

Kept apart from the flow so that the CLI can check a run before Prefect is imported.

`train.data_dir` and `train.run_dir` may be `s3://` URIs (`tasks/training/run_store.py`): the committed token
shards are pulled into their local staging copy, and so is the run folder, before the launch checks; the config
then holds the local copies, and `run_uri` the store's run folder, which the flow pushes checkpoints to.
"""

from dataclasses import replace

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from fineforge.model.pretrain import PretrainConfig, PretrainStage
from fineforge.model.trainer import check_launch
from fineforge.tasks.common.committed import pull
from fineforge.tasks.common.object_store import ObjectStoreError, check_work_dir, is_remote, staging_path
from fineforge.tasks.training.launch import LaunchConfig
from fineforge.tasks.training.run_store import pull_run


def staged_data_dir(uri: str) -> str:
    """The local copy of the token shards committed at `uri` (pulled); FileNotFoundError when none is committed."""
    check_work_dir(uri)
    if pull(uri, staging_path(uri)) is None:
        raise FileNotFoundError(f"no committed token shards at {uri} (run the tokenize stage into it first)")
    return str(staging_path(uri))


def staged_run_dir(uri: str) -> str:
    """The local copy of the run folder at `uri`, with the checkpoints stored there (pulled)."""
    check_work_dir(uri)
    pull_run(uri, staging_path(uri))
    return str(staging_path(uri))


class PretrainFlowConfig(BaseModel):
    """One pretraining run: what to train (the trainer's own config) and how to launch it."""

    train: PretrainConfig
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    mlflow_tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else SQLite in run_dir.")
    registered_model: str | None = Field(
        None, description="Register the final checkpoint as a version of this MLflow model, alias latest-pretrain."
    )
    run_uri: str | None = Field(
        None, description="Set from an s3:// train.run_dir: the run folder in the object store, which checkpoints "
        "are pushed to (train.run_dir is then its local staging copy).",
    )

    @model_validator(mode="after")
    def _stage_remote_paths(self) -> "PretrainFlowConfig":
        """Pull s3:// shards and run folder into their staging copies (a store that cannot be used is refused)."""
        for name, stage in (("data_dir", staged_data_dir), ("run_dir", staged_run_dir)):
            value = getattr(self.train, name)
            if not is_remote(value):
                continue
            try:
                self.train = replace(self.train, **{name: stage(value)})
            except (ObjectStoreError, FileNotFoundError) as e:
                raise PydanticCustomError("object_store", "train.{name}: {error}",
                                          {"name": name, "error": str(e)}) from e
            if name == "run_dir":
                self.run_uri = value
        return self

    @model_validator(mode="after")
    def _check_launch(self) -> "PretrainFlowConfig":
        """What the workers would refuse, refused here: the trainer's fields, shards, tokenizer, that each split
        holds a batch, the batch arithmetic for the launch's world size, a checkpoint of another shape."""
        check_launch(PretrainStage(self.train), self.launch.world_size)
        return self
