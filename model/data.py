"""Deterministic, rank-sharded reading of token shards (llm.c's scheme) with an exact, saveable position.

Every optimizer micro-step, the world reads one contiguous window of `batch_size * seq_len * world_size + 1`
tokens from the current shard; rank r takes the r-th slice of it (plus one token for the shifted targets).
All ranks advance in lockstep, so one global position (shard, offset, epoch) describes every rank's place
and can be restored exactly, even under another world size.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from model.shards import ShardError, load_manifest, read_header, read_shard

log = logging.getLogger(__name__)


@dataclass
class DataPosition:
    """Where the next window starts: shard index, token offset in it, completed passes over the split."""

    shard: int = 0
    offset: int = 0
    epoch: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataPosition:
        return cls(shard=int(d["shard"]), offset=int(d["offset"]), epoch=int(d["epoch"]))


def split_shards(data_dir: str | Path, split: str, verify: bool = True) -> tuple[list[Path], dict]:
    """The shard files of one split, in manifest order, validated (headers always, sha256 with `verify`)."""
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir, verify=verify)
    paths = [data_dir / s["file"] for s in manifest.get("shards", []) if s.get("split") == split]
    if not paths:
        raise ShardError(f"{data_dir}: the manifest lists no {split!r} shards")
    if not verify:
        for path in paths:
            read_header(path)
    return paths, manifest


class TokenLoader:
    """Batches (inputs, targets) of shape (batch_size, seq_len) for one rank, in a fixed order."""

    def __init__(
        self,
        shard_paths: list[Path],
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        position: DataPosition | None = None,
    ) -> None:
        self.batch_size, self.seq_len, self.rank, self.world_size = batch_size, seq_len, rank, world_size
        self.window = batch_size * seq_len * world_size + 1
        counts = {path: read_header(path)[1] for path in shard_paths}
        self.shards = [path for path in shard_paths if counts[path] >= self.window]
        for path in shard_paths:
            if counts[path] < self.window:
                log.warning("%s: %d tokens, fewer than one window of %d; skipped", path, counts[path], self.window)
        if not self.shards:
            raise ShardError(
                f"no shard holds one window of {self.window} tokens (batch_size {batch_size} x seq_len {seq_len} "
                f"x world_size {world_size} + 1); shards have {sorted(counts.values())} tokens"
            )
        self._tokens: dict[int, np.ndarray] = {}
        self.position = DataPosition()
        if position is not None:
            self.restore(position)

    @property
    def tokens_per_window(self) -> int:
        """Tokens the whole world consumes per call of `next_batch`."""
        return self.window - 1

    def restore(self, position: DataPosition) -> None:
        """Continue from a saved position."""
        if not 0 <= position.shard < len(self.shards):
            raise ShardError(f"saved data position {position} names shard {position.shard} of {len(self.shards)}")
        self.position = DataPosition(position.shard, position.offset, position.epoch)

    def _shard(self, index: int) -> np.ndarray:
        if index not in self._tokens:
            self._tokens = {index: read_shard(self.shards[index])}  # keep one shard mapped at a time
        return self._tokens[index]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next (inputs, targets), both int64 (batch_size, seq_len); advances the position."""
        pos = self.position
        tokens = self._shard(pos.shard)
        if pos.offset + self.window > len(tokens):
            pos.offset = 0
            pos.shard += 1
            if pos.shard == len(self.shards):
                pos.shard, pos.epoch = 0, pos.epoch + 1
            tokens = self._shard(pos.shard)
        local = self.batch_size * self.seq_len
        start = pos.offset + self.rank * local
        chunk = torch.from_numpy(tokens[start : start + local + 1].astype(np.int64))
        pos.offset += self.tokens_per_window
        x = chunk[:-1].view(self.batch_size, self.seq_len)
        y = chunk[1:].view(self.batch_size, self.seq_len)
        return x, y
