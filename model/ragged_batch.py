"""Rows of different lengths in one forward pass and one KV cache (left padding, per-row positions and masks).

The cache has one slot axis for the whole batch, filled up to `pos`. Row b holds its `lengths[b]` tokens
in the last slots `[pos - lengths[b], pos)`; the slots before them are padding that no query sees. A
token's rotary position is its index in its own row, so a row's keys and values never depend on the
padding or on the other rows: a row can be taken out of a batch (one that waits for a tool), put back
into another, or encoded alone, and its cache stays valid. Every batch keeps `pos` equal to its longest
row, so padding never outgrows what the rows need.

    batch, logits = RaggedBatch.encode(model, [[1, 2, 3], [4, 5]])   # last-position logits (2, V)
    logits = batch.extend(torch.tensor([[6], [7]]))                  # one more token per row
    waiting = batch.select([1]); batch = batch.select([0])           # rows apart...
    batch = RaggedBatch.concat([batch, waiting])                     # ...and together again
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fineforge.model.gpt import GPT, KVCache

PAD_ID = 0  # the id fed at padding slots: any id will do, no query sees them
MAX_PADDING = 0.2  # windows are encoded in groups of similar length, each at most this fraction padding


def ragged_layout(
    lengths: torch.Tensor, pos: int, new: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Rotary positions (B, new) and attention mask (B, 1, new, pos + new) for `new` slots after `pos` cached
    ones, where row b's real tokens are its last `lengths[b]` slots (counted after the new slots are added).

    A query sees the real keys of its row up to itself; a padding query sees itself only (so that it
    has a finite output). (None, None) when no row has padding: positions count from 0, attention is causal.
    """
    total = pos + new
    starts = total - lengths  # first real slot of each row
    if not bool(starts.any()):
        return None, None
    query = torch.arange(pos, total, device=lengths.device)
    key = torch.arange(total, device=lengths.device)
    positions = (query[None, :] - starts[:, None]).clamp(min=0)
    seen = (key[None, None, :] >= starts[:, None, None]) & (key[None, None, :] <= query[None, :, None])
    mask = seen | (key[None, None, :] == query[None, :, None])
    return positions, mask.unsqueeze(1)


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Indices of `lengths`, longest first, cut into groups that padding to their longest leaves at most
    MAX_PADDING padding (encoding is compute-bound: padding slots cost as much as real tokens)."""
    groups: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] * (1 - MAX_PADDING) <= real + lengths[i]:
            groups[-1].append(i)
            real += lengths[i]
        else:
            groups.append([i])
            real = lengths[i]
    return groups


def encode_windows(
    model: GPT, windows: Sequence[Sequence[int]], use_cache: bool = True
) -> tuple[RaggedBatch | None, torch.Tensor]:
    """`RaggedBatch.encode` of the windows, in order, encoding each distinct window once and windows of
    similar length together (so that little is padding); their last-position logits (B, V)."""
    keys = [tuple(w) for w in windows]
    distinct = list(dict.fromkeys(keys))
    groups = length_groups([len(w) for w in distinct])
    parts = [RaggedBatch.encode(model, [distinct[i] for i in group], use_cache) for group in groups]
    slot = {distinct[i]: k for k, i in enumerate(i for group in groups for i in group)}
    index = [slot[key] for key in keys]
    logits = torch.cat([part_logits for _, part_logits in parts])[index]
    if not use_cache:
        return None, logits
    return RaggedBatch.concat([batch for batch, _ in parts]).select(index), logits


class RaggedBatch:
    """Rows of different lengths sharing one KV cache; `lengths[b]` real tokens of row b end at slot `pos`."""

    def __init__(self, model: GPT, cache: KVCache, lengths: torch.Tensor) -> None:
        self.model = model
        self.cache = cache
        self.lengths = lengths

    @property
    def size(self) -> int:
        return int(self.lengths.numel())

    @property
    def pos(self) -> int:
        return self.cache.pos

    @classmethod
    def encode(
        cls, model: GPT, windows: Sequence[Sequence[int]], use_cache: bool = True
    ) -> tuple[RaggedBatch | None, torch.Tensor]:
        """Encode token rows of different lengths (left-padded); their last-position logits (B, V) and, with
        `use_cache`, the batch holding their cache."""
        device = model.wte.weight.device
        width = max(len(w) for w in windows)
        padded = [[PAD_ID] * (width - len(w)) + list(w) for w in windows]
        idx = torch.tensor(padded, dtype=torch.long, device=device)
        lengths = torch.tensor([len(w) for w in windows], dtype=torch.long, device=device)
        positions, mask = ragged_layout(lengths, 0, width)
        with torch.inference_mode():
            cache = model.new_kv_cache(batch_size=len(windows)) if use_cache else None
            logits, _ = model(idx, kv_cache=cache, last_only=True, positions=positions, attn_mask=mask)
        batch = cls(model, cache, lengths) if cache is not None else None
        return batch, logits[:, -1]

    def extend(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed `tokens` (B, T), T new tokens for every row; their last-position logits (B, V)."""
        new = tokens.shape[1]
        self.lengths = self.lengths + new
        positions, mask = ragged_layout(self.lengths, self.pos, new)
        with torch.inference_mode():
            logits, _ = self.model(tokens, kv_cache=self.cache, last_only=True, positions=positions, attn_mask=mask)
        return logits[:, -1]

    def select(self, rows: Sequence[int]) -> RaggedBatch:
        """A new batch of the given rows (repeats allowed, e.g. samples of one prompt), padding trimmed."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.lengths.device)
        lengths = self.lengths[index]
        width = int(lengths.max())
        with torch.inference_mode():
            cache = self.model.new_kv_cache(batch_size=len(rows))
            cache.k[:, :, :, :width] = self.cache.k[:, index, :, self.pos - width : self.pos]
            cache.v[:, :, :, :width] = self.cache.v[:, index, :, self.pos - width : self.pos]
        cache.pos = width
        return RaggedBatch(self.model, cache, lengths)

    @staticmethod
    def concat(parts: Sequence[RaggedBatch]) -> RaggedBatch:
        """One batch of the rows of every part, in order, right-aligned at the longest row."""
        model = parts[0].model
        width = max(p.pos for p in parts)
        row = 0
        with torch.inference_mode():
            cache = model.new_kv_cache(batch_size=sum(p.size for p in parts))
            for p in parts:
                slots = slice(width - p.pos, width)
                cache.k[:, row : row + p.size, :, slots] = p.cache.k[:, :, :, : p.pos]
                cache.v[:, row : row + p.size, :, slots] = p.cache.v[:, :, :, : p.pos]
                row += p.size
        cache.pos = width
        return RaggedBatch(model, cache, torch.cat([p.lengths for p in parts]))
