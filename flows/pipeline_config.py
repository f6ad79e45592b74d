"""The one config of the `pipeline` flow (rendered by Prefect as the run form): the stage configs, composed.

The pipeline owns what its stages share: the work dir, the Spark session and the MLflow store, and what one
stage hands the next (tokenize's input, pretrain's data_dir). Those fields of the stage sections are left out
of the run form (which sends every field it shows) and refused when given (they would point elsewhere).
Every check that needs no work runs here, before any stage starts: the data build's own checks (its input
resolves, the languages, ...), tokenize's (the tokenizer loads and fits its dtype; its input is the data
build's output, which does not exist yet) and the trainer's (types, ranges, the model shape, the batch
arithmetic for the launch's world size; the shards are checked when they exist, before torchrun starts).
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from fineforge.flows.data_build_config import DataBuildConfig
from fineforge.flows.pretrain_config import PretrainFlowConfig
from fineforge.model.config import ConfigError, validate
from fineforge.model.pretrain import PretrainConfig, gradient_accumulation
from fineforge.tasks.common.object_store import usable_work_dir, work_dir
from fineforge.tasks.common.spark import SparkConfig
from fineforge.tasks.tokens.config import TokenizeConfig
from fineforge.tasks.training.launch import LaunchConfig

SHARED_FIELDS = ("workdir", "spark")  # set by the pipeline for its Spark stages
HANDED_FIELDS = {"data_build": ("mlflow_tracking_uri",), "tokenize": ("input",)}  # set from the pipeline or a stage
PRETRAIN_RUN = "runs/pretrain"  # the default run folder, under the work dir


class PipelineDataBuildConfig(DataBuildConfig):
    """The data build of a pipeline: its work dir, Spark session and MLflow store are the pipeline's."""

    workdir: SkipJsonSchema[str] = "work"
    spark: SkipJsonSchema[SparkConfig] = Field(default_factory=SparkConfig)
    mlflow_tracking_uri: SkipJsonSchema[str | None] = None


class PipelineTokenizeConfig(TokenizeConfig):
    """The tokenize stage of a pipeline: its input is the data build's output (none exists before the run)."""

    input: SkipJsonSchema[list[str]] = Field(default_factory=list)
    workdir: SkipJsonSchema[str] = "work"
    spark: SkipJsonSchema[SparkConfig] = Field(default_factory=SparkConfig)

    @model_validator(mode="after")
    def _inputs_exist(self) -> "PipelineTokenizeConfig":  # overrides CorpusConfig's check: the pipeline's input
        return self


@dataclass(kw_only=True)
class PipelinePretrainConfig(PretrainConfig):
    """The trainer's fields; data_dir is the tokenize stage's shards, run_dir defaults to WORKDIR/runs/pretrain."""

    data_dir: SkipJsonSchema[str] = ""  # set by the pipeline
    run_dir: str = ""
    experiment: str = "fineforge-pretrain"


class PretrainSection(BaseModel):
    """The pretrain stage of a pipeline: what to train and how torchrun starts it."""

    model_config = ConfigDict(extra="forbid")

    train: PipelinePretrainConfig = Field(default_factory=PipelinePretrainConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    registered_model: str | None = Field(
        "fineforge", description="Register the final checkpoint as a version of this MLflow model, alias "
        "latest-pretrain (empty: do not register).",
    )  # fmt: skip


class PipelineConfig(BaseModel):
    """From WARC files to a pretrained model: data build -> tokenize -> pretrain, each skipped when complete."""

    model_config = ConfigDict(extra="forbid")

    workdir: str = Field("work", description="Everything goes under it: the corpus, the token shards, the training "
                         "run (WORKDIR/runs/pretrain), report.md and the embedded MLflow store. A folder, or "
                         "s3://bucket/prefix (staged locally: MLflow's store stays in the staging copy).")
    spark: SparkConfig = Field(default_factory=SparkConfig)
    data_build: PipelineDataBuildConfig
    tokenize: PipelineTokenizeConfig = Field(default_factory=PipelineTokenizeConfig)
    pretrain: PretrainSection = Field(default_factory=PretrainSection)
    mlflow_tracking_uri: str | None = Field(
        None, description="Defaults to $MLFLOW_TRACKING_URI, else a SQLite file in the work dir."
    )
    mlflow_experiment: str = Field("fineforge-pipeline", description="Experiment of the pipeline's parent run.")

    @field_validator("workdir", mode="before")
    @classmethod
    def _workdir_usable(cls, value: Any) -> str:
        return usable_work_dir(value)

    @model_validator(mode="before")
    @classmethod
    def _share_workdir_and_spark(cls, values: Any) -> Any:
        """The stages' work dir and Spark session are the pipeline's; what a stage hands the next is not given."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        pretrain = values.get("pretrain")
        train = pretrain.get("train") if isinstance(pretrain, dict) else None
        if isinstance(train, dict) and train.get("data_dir"):
            message = "pretrain.train.data_dir: set by the pipeline (the tokenize stage's shards)"
            raise PydanticCustomError("handed_field", message)
        for section in ("data_build", "tokenize"):
            stage = dict(values.get(section) or {})
            for name in SHARED_FIELDS:
                if name in stage:
                    raise PydanticCustomError("shared_field", f"{section}.{name}: set by the pipeline's own {name}")
                stage[name] = values.get(name, cls.model_fields[name].get_default(call_default_factory=True))
            for name in HANDED_FIELDS[section]:
                if stage.get(name):
                    raise PydanticCustomError("handed_field", f"{section}.{name}: set by the pipeline")
            values[section] = stage
        return values

    @model_validator(mode="after")
    def _trainer_fields(self) -> "PipelineConfig":
        """The trainer's checks that need no shards (those run again, with the shards, before the launch)."""
        train = self.train_config(data_dir="<tokens>")
        try:
            validate(train)
            gradient_accumulation(train, train.model_shape().block_size, self.pretrain.launch.world_size)
        except ConfigError as exc:
            raise PydanticCustomError("pretrain", "pretrain.train: {error}", {"error": str(exc)}) from exc
        return self

    @property
    def run_dir(self) -> str:
        """The pretraining run folder (a path, or a URI in an object store)."""
        if self.pretrain.train.run_dir:
            return work_dir(self.pretrain.train.run_dir).uri
        return work_dir(self.workdir).uri_of(*PRETRAIN_RUN.split("/"))

    def train_config(self, data_dir: str | Path) -> PretrainConfig:
        """The trainer's config of this pipeline's pretraining on the shards in `data_dir`."""
        values = {**asdict(self.pretrain.train), "data_dir": str(data_dir), "run_dir": str(self.run_dir)}
        return PretrainConfig(**values)

    def pretrain_flow_config(self, data_dir: str | Path, tracking_uri: str) -> PretrainFlowConfig:
        """The `pretrain` flow's config (every launch check, now with the shards)."""
        return PretrainFlowConfig(train=self.train_config(data_dir), launch=self.pretrain.launch,
                                  mlflow_tracking_uri=tracking_uri, registered_model=self.pretrain.registered_model)
