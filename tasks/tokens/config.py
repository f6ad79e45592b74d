"""The configs of the tokens commands: which corpus, which tokenizer, how to split and shard, how to train a BPE.

Every check that needs no work is a validator here (inputs exist, tokenizer known and loadable, the dtype
holds its vocabulary, ranges), so the CLI, a Prefect run and the API fail alike, naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fineforge.model.shards import ShardError, shard_dtype
from fineforge.model.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError, load_tokenizer
from fineforge.tasks.common.committed import committed_children, pull
from fineforge.tasks.common.documents import SchemaError, check_parquet_inputs
from fineforge.tasks.common.object_store import ObjectStoreError, is_remote, staging_path, usable_work_dir
from fineforge.tasks.common.spark import SparkConfig
from fineforge.tasks.scrub.config import SCRUBBED

TOKENS_GROUP = "tokens"  # shard sets live in <workdir>/tokens/<name>/
DEFAULT_SHARD_TOKENS = 100_000_000
SMALLEST_BPE_VOCABULARY = 256 + len(SPECIAL_TOKENS)  # every byte, and fineforge's special tokens


def token_dtype(vocab_size: int, requested: str = "auto") -> str:
    """The shard dtype for a vocabulary; a clear error when the requested one cannot hold every id."""
    needed = shard_dtype(vocab_size)
    if requested == "auto":
        return needed
    if vocab_size > np.iinfo(requested).max + 1:
        raise ShardError(f"a vocabulary of {vocab_size} tokens does not fit {requested} shards (needs {needed})")
    return requested


def corpus_folders(workdir: str | Path) -> list[str]:
    """The data build's corpus: every `<workdir>/<dump>/scrubbed/` folder (in a remote work dir, every committed
    one, as URIs)."""
    if is_remote(workdir):
        return committed_children(str(workdir), f"*/{SCRUBBED}")
    return sorted(str(p) for p in Path(workdir).glob(f"*/{SCRUBBED}") if p.is_dir())


def staged_inputs(inputs: list[str]) -> list[str]:
    """The inputs as local paths: a remote one (`s3://...`, a committed stage output) is pulled into its staging
    copy; FileNotFoundError when one is not committed."""
    local = []
    for item in inputs:
        if is_remote(item):
            if pull(item, staging_path(item)) is None:
                raise FileNotFoundError(f"no committed output at {item}")
            item = str(staging_path(item))
        local.append(item)
    return local


class CorpusConfig(BaseModel):
    """Which documents: Parquet folders or files, by default the data build's corpus in the work dir."""

    model_config = ConfigDict(extra="forbid")

    input: list[str] = Field(default_factory=list, description="Parquet folders (or files) of documents, or "
                             "committed outputs in an object store (s3://..., pulled into the local staging copy); "
                             f"default: every WORKDIR/DUMP/{SCRUBBED}/.")
    workdir: str = Field("work", description="The data build's output root, a folder or s3://bucket/prefix; shards "
                         "go to WORKDIR/tokens/NAME/.")
    val_fraction: float = Field(0.01, ge=0.0, le=1.0, description="Share of documents (by id hash) for validation.")
    spark: SparkConfig = Field(default_factory=SparkConfig)

    @field_validator("workdir", mode="before")
    @classmethod
    def _workdir_usable(cls, value: Any) -> str:
        return usable_work_dir(value)

    @model_validator(mode="after")
    def _inputs_exist(self) -> CorpusConfig:
        if not self.input:
            self.input = corpus_folders(self.workdir)
            if not self.input:
                raise PydanticCustomError("no_input", f"no input: pass input, or build the corpus into "
                                          f"{self.workdir}/<dump>/{SCRUBBED}/ first")
        try:
            self.input = staged_inputs(self.input)
        except (FileNotFoundError, ObjectStoreError) as e:
            raise PydanticCustomError("input_not_found", "input: {error}", {"error": str(e)}) from e
        missing = [p for p in self.input if not Path(p).exists()]
        if missing:
            raise PydanticCustomError("input_not_found", f"input not found: {', '.join(missing)}")
        try:
            check_parquet_inputs(self.input, self.document_columns())
        except SchemaError as e:
            raise PydanticCustomError("input_not_parquet", f"input: {e}") from e
        return self

    def document_columns(self) -> tuple[str, ...]:
        """The columns every input file must have: the document's id and text."""
        return ("id", "text")


class TokenizeConfig(CorpusConfig):
    """One tokenize run: which documents, which tokenizer, how to split and shard."""

    name: str = Field("corpus", pattern=r"^[\w.-]+$", description="Name of this shard set.")
    tokenizer: str = Field("gpt2", description="bytes, gpt2, cl100k_base, o200k_base, or a trained .json file.")
    vocab_dir: str | None = Field(None, description="Folder of published vocabulary files ($FINEFORGE_TOKENIZER_DIR).")
    shard_tokens: int = Field(DEFAULT_SHARD_TOKENS, gt=0, description="Tokens per shard (the last one shorter).")
    dtype: Literal["auto", "uint16", "uint32"] = Field("auto", description="Token dtype; auto = smallest fitting.")
    id_column: str = "id"
    text_column: str = "text"
    min_partitions: int | None = Field(None, gt=0, description="Slices of the input, one Spark task each "
                                      "(default: 4 per core; a file is never less than one).")

    def document_columns(self) -> tuple[str, ...]:
        return (self.id_column, self.text_column)

    def load_tokenizer(self) -> Tokenizer:
        """The configured tokenizer."""
        return load_tokenizer(self.tokenizer, self.vocab_dir)

    @model_validator(mode="after")
    def _tokenizer_fits(self) -> TokenizeConfig:
        try:
            token_dtype(self.load_tokenizer().vocab_size, self.dtype)
        except (TokenizerError, ShardError) as e:
            raise PydanticCustomError("tokenizer", f"tokenizer: {e}") from e
        return self


class TokenizerTrainingConfig(CorpusConfig):
    """Train a byte-level BPE on a random sample of the corpus's training documents."""

    output: str = Field(description="Where to save the tokenizer JSON file.")
    vocab_size: int = Field(8192, ge=SMALLEST_BPE_VOCABULARY, description="Vocabulary size, special tokens included.")
    sample_docs: int | None = Field(None, gt=0, description="Train on a random sample of N documents.")
    fraction: float | None = Field(None, gt=0.0, le=1.0, description="Train on a random fraction of the documents.")
    seed: int = Field(0, description="Seed of the random sample.")
    min_frequency: int = Field(2, ge=1, description="Merges of pairs seen fewer times are not learnt.")
