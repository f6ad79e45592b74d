"""The conversation stage's config: sources (with their mixture weight and epochs), tokenizer, context.

Every field is checked before any work starts: an unknown source kind or role, a missing file, or two
sources with one name fail validation, naming the field.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fineforge.model.chat import ROLES
from fineforge.tasks.conversations.identity import LANGUAGES
from fineforge.tasks.conversations.rendering import TooLong

Role = Literal[ROLES]  # type: ignore[valid-type]
Language = Literal[LANGUAGES]  # type: ignore[valid-type]


class SourceBase(BaseModel):
    """What every source has: a name for the statistics, its share of the mix, a system message."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, pattern=r"^[\w.-]+$", description="Label in stats and ids; default: the kind.")
    weight: float = Field(1.0, gt=0, description="Loss weight of this source's trainable tokens (1: as others).")
    epochs: float = Field(1.0, gt=0, description="Times each training conversation appears (fraction: a sample).")
    system: str | None = Field(None, description="A system message put first in each conversation.")
    limit: int | None = Field(None, gt=0, description="Use only the first N conversations.")

    @property
    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


class FileSource(SourceBase):
    path: str = Field(..., description="A JSONL file.")

    @field_validator("path")
    @classmethod
    def _exists(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value


class OasstSource(FileSource):
    """OpenAssistant trees (JSONL export): each tree's best-ranked path."""

    kind: Literal["oasst"]


class Gsm8kSource(FileSource):
    """GSM8K problems: the question, the solution step by step, "The answer is N."."""

    kind: Literal["gsm8k"]
    calculator: Literal["strip", "tool"] = Field("tool", description="Annotations <<a*b=c>>: drop or python calls.")


class JsonlSource(FileSource):
    """A user's JSONL: {"messages": [...]} or {"prompt", "response"} per line."""

    kind: Literal["jsonl"]
    roles: dict[str, Role] = Field(default_factory=dict, description="Rename the file's roles to these.")


class IdentitySource(SourceBase):
    """Generated "who are you / who made you" conversations."""

    kind: Literal["identity"]
    assistant_name: str = Field(..., min_length=1, description="The name the assistant answers with.")
    maker: str = Field(..., min_length=1, description="Who made it.")
    count: int = Field(..., gt=0)
    languages: list[Language] = Field(default_factory=lambda: list(LANGUAGES), min_length=1)
    seed: int = 0


class WordProblemSource(SourceBase):
    """Generated arithmetic word problems of graded difficulty, with their answers."""

    kind: Literal["word_problems"]
    count: int = Field(..., gt=0)
    max_difficulty: int = Field(3, ge=1, le=5)
    answer_first: bool = Field(False, description="The control variant: state the answer, then the steps.")
    seed: int = 0


Source = Annotated[
    OasstSource | Gsm8kSource | JsonlSource | IdentitySource | WordProblemSource, Field(discriminator="kind")
]


class ConversationsConfig(BaseModel):
    """One conversation build: sources -> rendered, tokenized, masked shards in <workdir>/conversations/<name>/."""

    model_config = ConfigDict(extra="forbid")

    sources: list[Source] = Field(..., min_length=1)
    workdir: str = Field("work", description="Output root.")
    name: str = Field("sft", pattern=r"^[\w.-]+$", description="Name of this conversation set.")
    tokenizer: str = Field("gpt2", description="bytes, gpt2, cl100k_base, o200k_base, or a trained .json file.")
    vocab_dir: str | None = Field(None, description="Folder of published vocabulary files ($FINEFORGE_TOKENIZER_DIR).")
    context_length: int = Field(1024, ge=16, description="Most tokens a conversation may have.")
    too_long: TooLong = Field("truncate", description="Longer conversations: cut at a turn "
                                                  "boundary after an assistant turn, or drop.")
    val_fraction: float = Field(0.05, ge=0.0, le=1.0, description="Share of conversations (by id hash) for val.")
    seed: int = Field(0, description="Seed of the fractional-epoch samples.")
    shard_tokens: int = Field(100_000_000, gt=0, description="Tokens per shard (whole conversations).")

    @model_validator(mode="after")
    def _shards_hold_a_conversation(self) -> "ConversationsConfig":
        if self.shard_tokens < self.context_length:
            raise ValueError(f"shard_tokens {self.shard_tokens} is below context_length {self.context_length}")
        return self

    @model_validator(mode="after")
    def _unique_source_names(self) -> "ConversationsConfig":
        labels = [s.label for s in self.sources]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"sources: names {repeated} are used twice; give each source its own 'name'")
        return self
