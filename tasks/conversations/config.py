"""The conversation stage's config: sources (with their mixture weight and epochs), tokenizer, context.

Every field is checked before any work starts: an unknown source kind or role, a missing file, or two
sources with one name fail validation, naming the field.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fineforge.model.chat import ROLES
from fineforge.tasks.conversations.code_tasks import CODE_TASKS, WORD_TASKS, CodeTask, Executor
from fineforge.tasks.conversations.corpus_search import FACT_KINDS, FactKind
from fineforge.tasks.conversations.identity import LANGUAGES
from fineforge.tasks.conversations.rendering import TooLong
from fineforge.tasks.search.config import indexed_dumps
from fineforge.tasks.search.query import BUILD_COMMAND

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
    calculator: Literal["strip", "tool"] = Field("tool", description="GSM8K calculator annotations (a*b=c in "
                                                 "double angle brackets): drop them, or make them python calls.")


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


class CodeTaskSource(SourceBase):
    """Generated questions answered with the python tool: letter and character counts, big arithmetic, sorting."""

    kind: Literal["code_tasks"]
    count: int = Field(..., gt=0)
    tasks: list[CodeTask] = Field(default_factory=lambda: list(CODE_TASKS), min_length=1)
    words: str | None = Field(None, description="A text file whose lower-case words the counting questions use.")
    tool: bool = Field(True, description="False: the control variant that answers directly, without the tool.")
    executor: Executor = Field("sandbox", description="What runs the code: the python sandbox, or the "
                                                      "calculator (arithmetic only).")
    seed: int = 0

    @field_validator("words")
    @classmethod
    def _words_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @model_validator(mode="after")
    def _tasks_have_what_they_need(self) -> "CodeTaskSource":
        needs_words = sorted(WORD_TASKS & set(self.tasks))
        if needs_words and self.words is None:
            raise ValueError(f"words: the tasks {needs_words} need a text file of words")
        other = sorted(set(self.tasks) - {"arithmetic"})
        if self.executor == "calculator" and other:
            raise ValueError(f"executor: the calculator runs arithmetic only, not {other}; use the sandbox")
        return self


class CorpusSearchSource(SourceBase):
    """Generated questions about facts of the built corpus, answered with the search tool."""

    kind: Literal["corpus_search"]
    workdir: str = Field(..., description="The work dir whose corpus and search index the questions come from.")
    dumps: list[str] | None = Field(None, description="Only these dumps (default: every indexed dump).")
    k: int = Field(3, ge=1, description="Results per search, as the runtime's search tool returns them.")
    facts: list[FactKind] = Field(default_factory=lambda: list(FACT_KINDS), min_length=1,
                                  description="What may be blanked, in order of preference.")
    per_document: int = Field(1, ge=1, description="Most questions from one document.")
    tool: bool = Field(True, description="False: the control variant that answers directly, without the tool.")
    seed: int = 0

    @model_validator(mode="after")
    def _has_index(self) -> "CorpusSearchSource":
        indexed = indexed_dumps(Path(self.workdir))
        if not indexed:
            raise ValueError(f"workdir: no search index in {self.workdir}: build it with "
                             f"`{BUILD_COMMAND.format(workdir=self.workdir)}`")
        missing = sorted(set(self.dumps or []) - set(indexed))
        if missing:
            raise ValueError(f"dumps: {missing} are not in the search index of {self.workdir} "
                             f"(indexed: {sorted(indexed)})")
        return self


Source = Annotated[
    OasstSource | Gsm8kSource | JsonlSource | IdentitySource | WordProblemSource | CodeTaskSource
    | CorpusSearchSource,
    Field(discriminator="kind"),
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
