"""The reward model's training data: rankings rendered in the chat format and tokenized (a preference set).

A preference set is a folder written by `fineforge reward pairs` (`tasks/preferences/pairs.py`):

    manifest.json     format, tokenizer identity, max_length, counts, the sha256 of each split file
    train.jsonl       one ranking per line: {"prompt_id": "p-1", "prompt": [ids], "completion_ids": ["c-1", ...],
    heldout.jsonl       "completions": [[ids], ...], "ranks": [1, 0, ...]}   (rank 0 = best)

The row scored for a completion is the prompt's turns followed by the completion's assistant turn,
`<|im_start|>assistant<|im_sep|>reply<|im_end|>`; the score is read at that final `<|im_end|>`.
The data is small (thousands of rankings: hh-rlhf's 2,307 pairs are about 3 M bytes-tokenizer tokens), so
it is JSON that every rank reads whole into memory, not binary shards.

Batches are whole rankings: all K completions of a prompt are scored in one forward pass and give all
their ordered pairs (InstructGPT's reason: each completion is scored once, however many pairs it is in).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fineforge.model.chat import ASSISTANT, ChatTemplate, Conversation, Message
from fineforge.model.data import DataPosition
from fineforge.model.reward_model import RewardModel, pad_rows, pair_indices, score_rows
from fineforge.model.shards import ShardError, file_sha256, read_bounded_json

FORMAT = "fineforge-preference-set/1"
MANIFEST = "manifest.json"
SPLITS = ("train", "heldout")
MAX_MANIFEST_BYTES = 1 << 20
PAIRINGS = ("all", "best_worst")


class PreferenceDataError(ShardError):
    """A preference set that is missing, damaged, or does not fit the model or tokenizer it is used with."""


@dataclass(frozen=True)
class TokenizedRanking:
    """One ranking's token ids: the shared prompt, each completion's assistant turn, and its rank (0 = best)."""

    prompt_id: str
    prompt: tuple[int, ...]
    completion_ids: tuple[str, ...]
    completions: tuple[tuple[int, ...], ...]
    ranks: tuple[int, ...]

    def rows(self) -> list[list[int]]:
        """The rows to score: prompt + completion, one per completion."""
        return [[*self.prompt, *completion] for completion in self.completions]

    def to_json(self) -> str:
        return json.dumps({"prompt_id": self.prompt_id, "prompt": self.prompt, "completion_ids": self.completion_ids,
                           "completions": self.completions, "ranks": self.ranks})


def render_replies(
    template: ChatTemplate, prompt: Conversation, replies: Sequence[str]
) -> tuple[list[int], list[list[int]]]:
    """The prompt's ids and each reply's assistant turn; raises ChatFormatError for bad tool markup."""
    prompt_ids, _ = template.render(prompt)
    return prompt_ids, [template.render_message(Message(ASSISTANT, reply))[0] for reply in replies]


def score_replies(model: RewardModel, template: ChatTemplate, prompt: Conversation, replies: Sequence[str],
                  batch_size: int = 16) -> list[float]:
    """A reward model's score of each reply to one prompt; a row longer than the model's context is an error."""
    prompt_ids, reply_ids = render_replies(template, prompt, replies)
    context = model.trunk.config.block_size
    for reply, ids in zip(replies, reply_ids, strict=True):
        if len(prompt_ids) + len(ids) > context:
            raise ValueError(f"{len(prompt_ids) + len(ids)} tokens with its prompt, more than the reward model's "
                             f"context of {context}: {reply[:40]!r}...")
    return score_rows(model, [prompt_ids + ids for ids in reply_ids], template.tokenizer.eot_id, batch_size)


def write_preference_set(directory: str | Path, splits: dict[str, list[TokenizedRanking]], tokenizer: dict,
                         **details) -> dict:
    """Write both splits (JSONL) and then manifest.json (with each file's sha256, the tokenizer record and
    `details`) into `directory`; returns the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files, counts = {}, {}
    for split in SPLITS:
        path = directory / f"{split}.jsonl"
        path.write_text("".join(ranking.to_json() + "\n" for ranking in splits[split]), encoding="utf-8")
        files[split] = {"file": path.name, "sha256": file_sha256(path)}
        counts[split] = {"rankings": len(splits[split]),
                         "completions": sum(len(r.completions) for r in splits[split]),
                         "pairs": len(pair_indices([r.ranks for r in splits[split]])[0])}
    rows = [len(r.prompt) + len(c) for split in SPLITS for r in splits[split] for c in r.completions]
    manifest = {"format": FORMAT, "tokenizer": tokenizer, "files": files, "counts": counts,
                "longest_row": max(rows, default=0), **details}
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, directory / MANIFEST)
    return manifest


def load_preference_manifest(directory: str | Path, verify: bool = True) -> dict:
    """Read and check manifest.json; with `verify`, check each split file against its sha256."""
    directory = Path(directory)
    path = directory / MANIFEST
    manifest = read_bounded_json(path, MAX_MANIFEST_BYTES, PreferenceDataError,
                                 f"{directory}: no {MANIFEST} (build a preference set with `fineforge reward pairs`)")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PreferenceDataError(f"{path}: not a preference set manifest ({FORMAT})")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(SPLITS) or not all(
        isinstance(f, dict) and f.get("file") == f"{split}.jsonl" for split, f in files.items()
    ):
        raise PreferenceDataError(f"{path}: 'files' must name {', '.join(f'{s}.jsonl' for s in SPLITS)}")
    if not isinstance(manifest.get("tokenizer"), dict) or not isinstance(manifest.get("longest_row"), int):
        raise PreferenceDataError(f"{path}: needs 'tokenizer' (an object) and 'longest_row' (an integer)")
    for entry in files.values():
        split_path = directory / entry["file"]
        if not split_path.is_file():
            raise PreferenceDataError(f"{split_path}: listed in the manifest but missing")
        if verify and file_sha256(split_path) != entry.get("sha256"):
            raise PreferenceDataError(f"{split_path}: sha256 does not match the manifest")
    return manifest


def _ranking(record: object, vocab_size: int) -> TokenizedRanking:
    """One line of a split file, checked; a ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    ranking = TokenizedRanking(
        str(record["prompt_id"]), tuple(record["prompt"]), tuple(record["completion_ids"]),
        tuple(tuple(c) for c in record["completions"]), tuple(record["ranks"]),
    )  # fmt: skip
    ids = [*ranking.prompt, *(i for c in ranking.completions for i in c)]
    if not all(isinstance(i, int) and 0 <= i < vocab_size for i in ids):
        raise ValueError(f"token ids must be integers in [0, {vocab_size})")
    if not len(ranking.completions) == len(ranking.ranks) == len(ranking.completion_ids) >= 2:
        raise ValueError("needs as many completions, completion ids and ranks, at least 2")
    if not all(isinstance(r, int) for r in ranking.ranks) or not pair_indices([ranking.ranks])[0].numel():
        raise ValueError("ranks must be integers that order at least one pair")
    return ranking


def read_split(directory: str | Path, manifest: dict, split: str) -> list[TokenizedRanking]:
    """Every ranking of one split, each line checked (a damaged line is an error naming it)."""
    path = Path(directory) / manifest["files"][split]["file"]
    vocab_size = manifest["tokenizer"]["vocab_size"]
    rankings = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                rankings.append(_ranking(json.loads(line), vocab_size))
            except (ValueError, KeyError, TypeError) as exc:
                raise PreferenceDataError(f"{path} line {number}: {exc}") from exc
    return rankings


@dataclass
class PairBatch:
    """Rows of several rankings, right-padded, and index tensors of their (chosen, rejected) pairs."""

    tokens: torch.Tensor  # (R, T) int64
    lengths: torch.Tensor  # (R,)
    chosen: torch.Tensor  # (P,) row indices
    rejected: torch.Tensor  # (P,)
    rank_gaps: torch.Tensor  # (P,)

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(*(t.to(device, non_blocking=True) for t in
                           (self.tokens, self.lengths, self.chosen, self.rejected, self.rank_gaps)))


def collate(rankings: Sequence[TokenizedRanking], pad_id: int, pairing: str = "all") -> PairBatch:
    """One batch of whole rankings: every completion a row, pairs as `pairing` says (all, or best_worst)."""
    tokens, lengths = pad_rows([row for ranking in rankings for row in ranking.rows()], pad_id)
    chosen, rejected, gaps = pair_indices([r.ranks for r in rankings], best_worst_only=pairing == "best_worst")
    return PairBatch(tokens, lengths, chosen, rejected, gaps)


def count_pairs(rankings: Sequence[TokenizedRanking], pairing: str) -> int:
    return len(pair_indices([r.ranks for r in rankings], best_worst_only=pairing == "best_worst")[0])


class RankingLoader:
    """Training rankings in a fixed order per epoch (a permutation of (seed, epoch) with `shuffle`). Every
    micro-step the world takes the next batch_size x world_size rankings and rank r keeps the r-th
    batch_size of them; an epoch's remainder is skipped. The position (`DataPosition`, shard 0) restores
    exactly."""

    def __init__(self, rankings: list[TokenizedRanking], batch_size: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, seed: int = 0) -> None:
        self.rankings, self.batch_size, self.rank = rankings, batch_size, rank
        self.per_step, self.shuffle, self.seed = batch_size * world_size, shuffle, seed
        if len(rankings) < self.per_step:
            raise PreferenceDataError(f"{len(rankings)} training rankings are fewer than one micro-step of "
                                      f"batch_size {batch_size} x world_size {world_size}")
        self._order: tuple[int, np.ndarray] | None = None
        self.position = DataPosition()

    def restore(self, position: DataPosition) -> None:
        """Continue from a saved position."""
        if position.shard != 0 or not 0 <= position.offset <= len(self.rankings):
            raise PreferenceDataError(f"saved data position {position} does not fit {len(self.rankings)} rankings")
        self.position = DataPosition(0, position.offset, position.epoch)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            n = len(self.rankings)
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order = (epoch, order)
        return self._order[1]

    def next_rankings(self) -> list[TokenizedRanking]:
        """This rank's next micro-batch of rankings; advances the position."""
        pos = self.position
        if pos.offset + self.per_step > len(self.rankings):
            pos.offset, pos.epoch = 0, pos.epoch + 1
        step = self._epoch_order(pos.epoch)[pos.offset : pos.offset + self.per_step]
        pos.offset += self.per_step
        mine = step[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return [self.rankings[int(i)] for i in mine]


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
