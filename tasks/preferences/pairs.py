"""Rankings -> a preference set: the data step before `fineforge train reward` (`fineforge reward pairs`).

Each judgement of a rankings dataset (`rankings.py`) becomes one tokenized ranking: its prompt rendered in
the chat format, each completion as the assistant turn that follows it (`model/preference_data.py` has the
format). A completion whose row (prompt + reply) is longer than `max_length` is dropped and counted; a
ranking left with fewer than two completions is dropped and counted. Rankings go to the held-out split by
a hash of their prompt id, so every ranking of a prompt lands in the same split, the same one on every run.

The data is small (thousands of rankings), so this runs in one process in seconds, without Spark, and
writes JSONL. The set is written into a temporary folder renamed into place when complete; building it
again from the same rankings file and settings does nothing, and an existing set of other inputs is never
overwritten (give another output folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fineforge.model.chat import ChatFormatError, ChatTemplate, Conversation
from fineforge.model.checkpoint import CheckpointError, find_checkpoint, model_config, read_meta
from fineforge.model.preference_data import (
    MANIFEST,
    PreferenceDataError,
    TokenizedRanking,
    load_preference_manifest,
    render_replies,
    write_preference_set,
)
from fineforge.model.reward_model import tokenizer_record
from fineforge.model.shards import file_sha256
from fineforge.model.tokenizer import Tokenizer
from fineforge.tasks.preferences.rankings import Judgement, RankingsDataset

log = logging.getLogger(__name__)


class PairsConfig(BaseModel):
    """How a rankings dataset becomes a preference set."""

    model_config = ConfigDict(extra="forbid")

    rankings: str = Field(description="The rankings dataset (JSONL, `fineforge preferences import` or `rank`).")
    output: str = Field(description="The preference set folder to write.")
    tokenizer: str = Field(description="The trunk checkpoint's tokenizer spec: bytes, gpt2, ..., or a .json file.")
    tokenizer_dir: str | None = Field(None, description="Vocabulary files of a published encoding.")
    max_length: int = Field(ge=8, description="Longest row (prompt + reply) kept: the trunk's context.")
    heldout_fraction: float = Field(0.1, gt=0, lt=1, description="Share of prompts held out for evaluation.")

    @field_validator("rankings")
    @classmethod
    def _rankings_exist(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"rankings file not found: {value}")
        return value


def trunk_settings(checkpoint: str | Path) -> tuple[str, int]:
    """The tokenizer spec and context of a trunk checkpoint (a checkpoint folder or a run folder): what its
    preference set must be built with."""
    path = find_checkpoint(checkpoint)
    meta = read_meta(path)
    spec = (meta.get("tokenizer") or {}).get("spec")
    if not isinstance(spec, str):
        raise CheckpointError(f"{path}: records no tokenizer")
    return spec, model_config(path, meta).block_size


def heldout(prompt_id: str, fraction: float) -> bool:
    """Whether a prompt is held out: the first 8 bytes of its id's sha256, as a fraction of 2^64."""
    return int.from_bytes(hashlib.sha256(prompt_id.encode("utf-8")).digest()[:8], "big") < fraction * 2**64


def tokenized_ranking(judgement: Judgement, template: ChatTemplate, max_length: int,
                      counts: Counter) -> TokenizedRanking | None:
    """One judgement's rows; None (counted in `counts`) when it cannot be rendered or keeps < 2 completions."""
    try:
        prompt = Conversation.from_messages(judgement.prompt, require_assistant=False)
        prompt_ids, replies = render_replies(template, prompt, [c.text for c in judgement.completions])
    except ChatFormatError as exc:
        counts[f"unrenderable_{exc.reason}"] += 1
        return None
    keep = [i for i, reply in enumerate(replies) if len(prompt_ids) + len(reply) <= max_length]
    counts["completions_over_long"] += len(replies) - len(keep)
    if len(keep) < 2:
        counts["rankings_too_long"] += 1
        return None
    ranks = judgement.ranks
    return TokenizedRanking(judgement.prompt_id, tuple(prompt_ids), tuple(judgement.completions[i].id for i in keep),
                            tuple(tuple(replies[i]) for i in keep), tuple(ranks[i] for i in keep))


def build_preference_set(config: PairsConfig, tokenizer: Tokenizer) -> dict:
    """Write the preference set of `config.rankings` (skipped when already built from the same inputs);
    returns its manifest, with `skipped` set when nothing was done."""
    output = Path(config.output)
    build = {"rankings_sha256": file_sha256(config.rankings), "max_length": config.max_length,
             "tokenizer": tokenizer_record(config.tokenizer, tokenizer), "heldout_fraction": config.heldout_fraction}
    if (output / MANIFEST).is_file():
        existing = load_preference_manifest(output, verify=False)
        if existing.get("build") == build:
            return {**existing, "skipped": True}
        raise PreferenceDataError(f"{output} holds a preference set of other rankings or settings: give another "
                                  "output folder (or remove it)")
    if output.exists():
        raise PreferenceDataError(f"{output} exists and is not a preference set: give another output folder")
    dataset = RankingsDataset(config.rankings)
    template = ChatTemplate(tokenizer)
    counts: Counter = Counter()
    splits: dict[str, list[TokenizedRanking]] = {"train": [], "heldout": []}
    for judgement in dataset:
        ranking = tokenized_ranking(judgement, template, config.max_length, counts)
        if ranking is not None:
            splits["heldout" if heldout(ranking.prompt_id, config.heldout_fraction) else "train"].append(ranking)
    stats = {"rankings_in": len(dataset), "malformed_lines": len(dataset.malformed), **counts}
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = write_preference_set(tmp, splits, build["tokenizer"], build=build, stats=stats,
                                    source=str(Path(config.rankings).resolve()))
    os.replace(tmp, output)
    log.info("preference set %s: %s", output, json.dumps({**stats, **manifest["counts"]}))
    return manifest

