"""The settings of a ranking session (in the Prefect UI or the terminal): which checkpoint samples completions
of which prompts, how many per prompt, how a person judges them, and where judgements and samples go."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ORDER = "order"
BEST_WORST = "best_worst"
SAMPLES_SUFFIX = ".samples.jsonl"


class CompletionSampling(BaseModel):
    """How completions are sampled (the engine's settings); `seed` makes each prompt's completions reproducible."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(256, ge=1, description="Tokens per completion at most (it ends earlier at "
                                "the end of the turn).")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature (greedy decoding, 0, would make "
                               "every completion of a prompt the same).")
    top_k: int | None = Field(None, ge=1, description="Sample only from the k most likely tokens.")
    top_p: float | None = Field(None, gt=0, le=1, description="Sample only from the smallest set of tokens of "
                                "probability >= p.")
    seed: int | None = Field(None, description="Seed of the sampler, combined with each prompt's id.")


class RankingConfig(BaseModel):
    """One ranking session: K completions per prompt from a checkpoint, ordered (or best/worst) by a person."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(..., description="A checkpoint folder, or a run folder (its newest checkpoint).")
    prompts: str = Field(..., description="JSONL file of prompts: {\"messages\": [...]} or {\"prompt\": text}, "
                         "each with an optional \"id\".")
    dataset: str = Field(..., description="The rankings dataset (JSONL) every judgement is appended to.")
    samples: str | None = Field(None, description="Where sampled completions are stored so a re-run shows the "
                                "same ones; default: the dataset's name with .samples.jsonl.")
    num_completions: int = Field(4, ge=2, le=16, description="Completions sampled per prompt (K).")
    mode: Literal["order", "best_worst"] = Field(ORDER, description="order: rank every completion, best first; "
                                                 "best_worst: pick only the best and the worst.")
    judge: str = Field("", description="Name stored with each judgement (prefilled; the person can change it).")
    max_prompts: int | None = Field(None, ge=1, description="Offer at most this many unranked prompts in one "
                                    "session (the first ones of the file); default: all.")
    sampling: CompletionSampling = Field(default_factory=CompletionSampling)
    device: str = Field("cpu", description="Torch device that samples: cpu, cuda, cuda:1, ...")
    tokenizer_dir: str | None = Field(None, description="Vocabulary files of a published encoding (default "
                                      "$FINEFORGE_TOKENIZER_DIR).")

    @field_validator("checkpoint")
    @classmethod
    def _has_a_checkpoint(cls, value: str) -> str:
        from fineforge.model.checkpoint import CheckpointError, find_checkpoint, read_meta

        try:
            meta = read_meta(find_checkpoint(value))
        except CheckpointError as error:
            raise ValueError(str(error)) from None
        if not (meta.get("tokenizer") or {}).get("spec"):
            raise ValueError(f"{value}: the checkpoint's metadata names no tokenizer")
        return value

    @field_validator("prompts")
    @classmethod
    def _is_a_file(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"prompts file not found: {value}")
        return value

    @field_validator("dataset", "samples")
    @classmethod
    def _is_not_a_folder(cls, value: str | None) -> str | None:
        if value is not None and Path(value).is_dir():
            raise ValueError(f"{value} is a folder; give the path of a JSONL file")
        return value

    @property
    def samples_path(self) -> Path:
        """The store of sampled completions."""
        if self.samples:
            return Path(self.samples)
        dataset = Path(self.dataset)
        return dataset.with_name(dataset.stem + SAMPLES_SUFFIX)
