"""The one config of the `sft` flow (rendered by Prefect as the run form), checked before any work starts.

Kept apart from the flow, and free of Prefect imports, so that the CLI can check a run before Prefect is imported.
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from fineforge.model.config import ConfigError
from fineforge.model.sft import SFTConfig, SFTStage, check_before_build
from fineforge.model.tokenizer import TokenizerError, load_tokenizer
from fineforge.model.trainer import check_launch
from fineforge.tasks.conversations.config import ConversationsConfig
from fineforge.tasks.training.launch import LaunchConfig

CONVERSATIONS_DIR = "conversations"  # the conversation stage writes <workdir>/conversations/<name>/


def conversations_dir(config: ConversationsConfig) -> Path:
    """Where the conversation stage writes a config's shard set."""
    return Path(config.workdir) / CONVERSATIONS_DIR / config.name


def defaults_from_conversations(train: dict, conversations: ConversationsConfig) -> dict:
    """SFT fields with `data_dir` and `tokenizer_dir`, when left out, taken from the conversations built first."""
    return {"data_dir": str(conversations_dir(conversations)), "tokenizer_dir": conversations.vocab_dir, **train}


class SFTFlowConfig(BaseModel):
    """One SFT run: the conversations to build first (optional), what to train, and how to launch it."""

    train: SFTConfig
    conversations: ConversationsConfig | None = Field(
        None, title="Conversations", description="Build these conversations first (the conversation stage; skipped "
        "when already complete); train.data_dir defaults to their folder, WORKDIR/conversations/NAME.",
    )  # fmt: skip
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    mlflow_tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else SQLite in run_dir.")

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_conversations(cls, values: Any) -> Any:
        """train.data_dir and train.tokenizer_dir, when left out, are those of the conversations built first."""
        if not isinstance(values, dict) or not isinstance(values.get("train"), dict) or not values.get("conversations"):
            return values
        try:
            built = ConversationsConfig.model_validate(values["conversations"])
        except ValidationError:
            return values  # reported by the field's own validation
        return {**values, "train": defaults_from_conversations(values["train"], built)}

    @model_validator(mode="after")
    def _check_launch(self) -> "SFTFlowConfig":
        """What the workers would refuse, refused here: the trainer's fields, the checkpoint to start from, its
        tokenizer against the conversations', their chat tokens and context, the batch arithmetic, each split
        holding a batch, a checkpoint of another shape in run_dir. Conversations still to be built are checked
        by their config: tokenizer and context length."""
        if self.conversations is None:
            check_launch(SFTStage(self.train), self.launch.world_size)
            return self
        built = conversations_dir(self.conversations)
        if Path(self.train.data_dir).resolve() != built.resolve():
            raise ConfigError(f"sft config field 'data_dir': {self.train.data_dir} is not the folder of the "
                              f"conversations built first ({built}); leave it out or make it that folder")
        try:
            tokenizer = load_tokenizer(self.conversations.tokenizer, self.conversations.vocab_dir)
        except TokenizerError as exc:
            raise ConfigError(f"conversations config field 'tokenizer': {exc}") from exc
        check_before_build(self.train, tokenizer, self.conversations.context_length)
        return self
