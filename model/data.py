"""Deterministic, rank-sharded reading of token shards with an exact, saveable position.

All ranks advance in lockstep through the same order of sequences, so one global position (shard, sequence
offset in the shard's order, epoch) describes every rank's place and can be restored exactly, even under
another world size.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fineforge.model.shards import ShardError, load_manifest, read_header, read_shard

log = logging.getLogger(__name__)


@dataclass
class DataPosition:
    """Where the next micro-step starts: shard index, offset in the shard's sequence order, completed passes."""

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
    """Batches (inputs, targets) of shape (batch_size, seq_len) for one rank, in a fixed order.

    A shard is cut into sequences of seq_len + 1 tokens (the last token of one is the first of the next).
    Each micro-step the world takes the next `batch_size * world_size` sequences of the shard's order and
    rank r keeps the r-th `batch_size` of them. In order (`shuffle=False`) that is llm.c's contiguous reading;
    with `shuffle`, every (seed, epoch, shard) gets its own permutation of the sequences and its own phase
    (where the cut starts), so each batch mixes distant parts of the text and each epoch sees new windows.
    """

    def __init__(
        self,
        shard_paths: list[Path],
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        self.batch_size, self.seq_len, self.rank, self.world_size = batch_size, seq_len, rank, world_size
        self.shuffle, self.seed = shuffle, seed
        self.per_step = batch_size * world_size  # sequences the world takes per micro-step
        counts = {path: read_header(path)[1] for path in shard_paths}
        # the worst phase (seq_len - 1) must still leave one micro-step of sequences
        enough = {path: (count - seq_len) // seq_len >= self.per_step for path, count in counts.items()}
        self.shards = [path for path in shard_paths if enough[path]]
        self.counts = [counts[path] for path in self.shards]
        for path in shard_paths:
            if not enough[path]:
                log.warning("%s: %d tokens, fewer than %d sequences of %d; skipped", path, counts[path],
                            self.per_step, seq_len + 1)
        if not self.shards:
            raise ShardError(
                f"no shard holds one micro-step of batch_size {batch_size} x world_size {world_size} sequences of "
                f"seq_len {seq_len} + 1 tokens; shards have {sorted(counts.values())} tokens"
            )
        self._tokens: dict[int, np.ndarray] = {}
        self._layouts: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
        self.position = DataPosition()

    def restore(self, position: DataPosition) -> None:
        """Continue from a saved position."""
        if not 0 <= position.shard < len(self.shards):
            raise ShardError(f"saved data position {position} names shard {position.shard} of {len(self.shards)}")
        self.position = DataPosition(position.shard, position.offset, position.epoch)

    def _shard(self, index: int) -> np.ndarray:
        if index not in self._tokens:
            self._tokens = {index: read_shard(self.shards[index])}  # keep one shard mapped at a time
        return self._tokens[index]

    def _layout(self, shard: int, epoch: int) -> tuple[int, np.ndarray]:
        """(phase, order of sequence indices) of one shard in one epoch."""
        key = (shard, epoch)
        if key not in self._layouts:
            phase, count = 0, self.counts[shard]
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch, shard])
                phase = int(rng.integers(self.seq_len))
            n = (count - 1 - phase) // self.seq_len
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            self._layouts = {key: (phase, order)}
        return self._layouts[key]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next (inputs, targets), both int64 (batch_size, seq_len); advances the position."""
        pos = self.position
        phase, order = self._layout(pos.shard, pos.epoch)
        if pos.offset + self.per_step > len(order):
            pos.offset = 0
            pos.shard += 1
            if pos.shard == len(self.shards):
                pos.shard, pos.epoch = 0, pos.epoch + 1
            phase, order = self._layout(pos.shard, pos.epoch)
        first = pos.offset + self.rank * self.batch_size
        starts = phase + order[first : first + self.batch_size] * self.seq_len
        windows = self._shard(pos.shard)[starts[:, None] + np.arange(self.seq_len + 1)]
        pos.offset += self.per_step
        chunk = torch.from_numpy(windows.astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]
