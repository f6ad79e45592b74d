"""SFT batches (inputs, targets, loss mask) from a conversation shard set (`model/conversation_shards.py`).

SFT batches pad, they do not pack: each row holds one conversation from its first token, then padding.
The GPT's attention has no per-document mask, so packed conversations would attend to unrelated ones
before them, a context the model never has when it chats; one conversation per row trains exactly the
situation of inference. Padding is kept small instead: a batch is only as wide as its longest
conversation, and shuffled batches group conversations of similar length (`benchmarks/conversations.py`
measures the padding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fineforge.model.conversation_shards import ConversationShard, conversation_split
from fineforge.model.data import DataPosition
from fineforge.model.shards import ShardError

IGNORE_TARGET = -1  # GPT.forward ignores targets equal to -1 (padding)


class ConversationLoader:
    """SFT batches (inputs, targets, loss_mask), each (batch_size, T), one conversation per row.

    Conversations of all shards form one list, read each epoch in a fixed order. With `shuffle` that is a
    permutation per (seed, epoch), grouped by length: every `group_steps` micro-steps' worth of it is
    sorted by length, cut into micro-steps, and those micro-steps are shuffled, so a step holds
    conversations of similar length. Every micro-step the world takes the next batch_size * world_size
    conversations and rank r keeps the r-th batch_size of them; the remainder of an epoch is skipped.
    A row is the conversation's tokens but the last as inputs, padded with `pad_id`; targets are the next
    tokens, -1 on padding; loss_mask is the target's mask value times the conversation's weight. T is the
    step's longest conversation less one, rounded up to `row_multiple`, at most `seq_len` (the same on
    every rank). The position (`DataPosition`; its `shard` stays 0, the order spans all shards) restores
    exactly.
    """

    def __init__(
        self,
        shards: list[ConversationShard],
        batch_size: int,
        seq_len: int,
        pad_id: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        group_steps: int = 16,
        row_multiple: int = 64,
    ) -> None:
        self.shards, self.batch_size, self.seq_len, self.pad_id = shards, batch_size, seq_len, pad_id
        self.rank, self.world_size, self.shuffle, self.seed = rank, world_size, shuffle, seed
        self.group_steps, self.row_multiple = group_steps, row_multiple
        self.per_step = batch_size * world_size
        self._shard_of = np.concatenate([np.full(s.index.size, i, dtype=np.int32) for i, s in enumerate(shards)])
        self._local = np.concatenate([np.arange(s.index.size) for s in shards])
        self._lengths = np.concatenate([np.asarray(s.index["length"], dtype=np.int64) for s in shards])
        self.num_conversations = int(self._local.size)
        if self._lengths.max() - 1 > seq_len:
            raise ShardError(
                f"the longest conversation has {self._lengths.max()} tokens, more than seq_len {seq_len} + 1: raise "
                f"seq_len (up to the model's context) or rebuild the conversations with context_length <= "
                f"{seq_len + 1}"
            )
        if self.num_conversations < self.per_step:
            raise ShardError(
                f"{self.num_conversations} conversations are fewer than one micro-step of batch_size {batch_size} "
                f"x world_size {world_size}"
            )
        self._orders: dict[int, np.ndarray] = {}
        self.position = DataPosition()

    def restore(self, position: DataPosition) -> None:
        """Continue from a saved position."""
        if position.shard != 0 or not 0 <= position.offset <= self.num_conversations:
            raise ShardError(f"saved data position {position} does not fit {self.num_conversations} conversations")
        self.position = DataPosition(0, position.offset, position.epoch)

    def _order(self, epoch: int) -> np.ndarray:
        """The conversations of one epoch, in reading order."""
        if epoch not in self._orders:
            n = self.num_conversations
            if not self.shuffle:
                order = np.arange(n)
            else:
                rng = np.random.default_rng([self.seed, epoch])
                order = self._grouped_by_length(rng.permutation(n), rng)
            self._orders = {epoch: order}  # keep one epoch's order
        return self._orders[epoch]

    def _grouped_by_length(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        step, parts = self.per_step, []
        for begin in range(0, order.size, step * self.group_steps):
            chunk = order[begin : begin + step * self.group_steps]
            chunk = chunk[np.argsort(-self._lengths[chunk], kind="stable")]
            full = chunk.size // step
            steps = chunk[: full * step].reshape(full, step)[rng.permutation(full)]
            parts += [steps.reshape(-1), chunk[full * step :]]  # a partial step only ends the epoch
        return np.concatenate(parts)

    def _row(self, conversation: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shard = self.shards[int(self._shard_of[conversation])]
        start, length, weight, _ = shard.index[int(self._local[conversation])]
        tokens = np.asarray(shard.tokens[start : start + length], dtype=np.int64)
        mask = np.asarray(shard.mask[start + 1 : start + length], dtype=np.float32) * np.float32(weight)
        inputs = np.full(width, self.pad_id, dtype=np.int64)
        targets = np.full(width, IGNORE_TARGET, dtype=np.int64)
        loss_mask = np.zeros(width, dtype=np.float32)
        inputs[: length - 1], targets[: length - 1], loss_mask[: length - 1] = tokens[:-1], tokens[1:], mask
        return inputs, targets, loss_mask

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's next (inputs int64, targets int64, loss_mask float32); advances the position."""
        pos = self.position
        if pos.offset + self.per_step > self.num_conversations:
            pos.offset, pos.epoch = 0, pos.epoch + 1
        step = self._order(pos.epoch)[pos.offset : pos.offset + self.per_step]
        longest = int(self._lengths[step].max()) - 1
        width = min(self.seq_len, -(-longest // self.row_multiple) * self.row_multiple)
        mine = step[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        rows = [self._row(int(c), width) for c in mine]
        pos.offset += self.per_step
        inputs, targets, loss_mask = (torch.from_numpy(np.stack(column)) for column in zip(*rows, strict=True))
        return inputs, targets, loss_mask


def conversation_loader(data_dir: str | Path, split: str, batch_size: int, seq_len: int, rank: int = 0,
                        world_size: int = 1, shuffle: bool = True, seed: int = 0, group_steps: int = 16,
                        row_multiple: int = 64, verify: bool = True) -> ConversationLoader:
    """A loader over one split of a conversation shard set; padding uses the manifest's `pad_id`."""
    shards, manifest = conversation_split(data_dir, split, verify)
    return ConversationLoader(shards, batch_size, seq_len, int(manifest["pad_id"]), rank, world_size, shuffle, seed,
                              group_steps, row_multiple)
