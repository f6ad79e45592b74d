"""The reward model: a GPT trunk with a scalar head, trained on ranked completions with the Bradley-Terry loss.

The score of a conversation is the head applied to the trunk's final hidden state at its last `<|im_end|>`
(the end of the reply being judged): with causal attention that position has seen the whole conversation
and nothing after it, so right-padding never changes a score. Rankings (0 = best) become pairs:
all ordered pairs of differently ranked completions, or only best vs worst.

    rm = RewardModel(sft_gpt, end_id=tokenizer.encode_special("<|im_end|>"))
    scores = rm(tokens, lengths)                            # (B,)
    chosen, rejected, gaps = pair_indices([[0, 2, 1], [1, 0]])
    loss = bradley_terry_loss(scores[chosen], scores[rejected], centering=0.01)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fineforge.model.checkpoint import (
    MODEL_FILE,
    CheckpointError,
    find_checkpoint,
    load_weights_into,
    read_meta,
    stored_parameters,
    verify_file,
)
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.shards import file_sha256
from fineforge.model.tokenizer import BPETokenizer, Tokenizer

STAGE = "reward"  # the `stage` of a reward model's checkpoints
HEAD_KEY = "reward_head"  # the key a reward model's shape adds to its trunk's GPT config


def last_token_positions(tokens: torch.Tensor, token_id: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Position (B,) of the last `token_id` in each row, looking only at the first `lengths[b]` tokens."""
    B, T = tokens.shape
    positions = torch.arange(T, device=tokens.device).expand(B, T)
    found = tokens == token_id
    if lengths is not None:
        found &= positions < lengths.to(tokens.device)[:, None]
    last = torch.where(found, positions, -1).amax(dim=1)
    missing = (last < 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"rows {missing[:5]} hold no end token (id {token_id}): a score is read at the reply's end")
    return last


class RewardModel(nn.Module):
    """A GPT trunk (e.g. from an SFT checkpoint) and a linear scalar head read at the last end token."""

    def __init__(self, trunk: GPT, end_id: int) -> None:
        super().__init__()
        if not 0 <= end_id < trunk.config.vocab_size:
            raise ValueError(f"end_id {end_id} is outside the model's vocabulary of {trunk.config.vocab_size}")
        self.trunk = trunk
        self.end_id = end_id
        if not trunk.config.tie_embeddings:  # the head replaces it; frozen, it gets no gradient DDP would wait for
            trunk.lm_head.weight.requires_grad_(False)
        self.head = nn.Linear(trunk.config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(trunk.config.n_embd + 1))
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) float32 of right-padded rows; `lengths` (B,) bounds each row's real tokens (needed
        only when the padding id could be the end token itself)."""
        hidden = self.trunk.hidden_states(tokens)
        ends = last_token_positions(tokens, self.end_id, lengths)
        at_end = hidden[torch.arange(tokens.shape[0], device=tokens.device), ends]
        return self.head(at_end).squeeze(-1).float()

    def num_parameters(self) -> int:
        """Distinct parameters, the trunk's (its unused language head included) and the head's."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> int:
        """Training FLOPs per token: the trunk's less its vocabulary projection, plus the scalar head's."""
        c = self.trunk.config
        return self.trunk.flops_per_token() - 6 * c.vocab_size * c.n_embd + 6 * (c.n_embd + 1)


@dataclass(frozen=True)
class Pair:
    """Completion `chosen` was ranked above `rejected`, `rank_gap` places apart."""

    chosen: int
    rejected: int
    rank_gap: int


def expand_pairs(ranks: Sequence[int], best_worst_only: bool = False) -> list[Pair]:
    """Pairs of a ranking (`ranks[i]` is completion i's rank, 0 best; equal ranks are ties and make no pair):
    every ordered pair, better first, or with `best_worst_only` one pair of the best and the worst
    (the first listed among tied ones)."""
    ranks = [int(r) for r in ranks]
    order = sorted(range(len(ranks)), key=lambda i: (ranks[i], i))
    if best_worst_only:
        if not order:
            return []
        best = order[0]
        worst = next(i for i in order if ranks[i] == ranks[order[-1]])
        return [Pair(best, worst, ranks[worst] - ranks[best])] if ranks[worst] > ranks[best] else []
    return [
        Pair(better, worse, ranks[worse] - ranks[better])
        for n, better in enumerate(order)
        for worse in order[n + 1 :]
        if ranks[worse] > ranks[better]
    ]


def pair_indices(
    rankings: Sequence[Sequence[int]], best_worst_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tensors (chosen, rejected, rank gap) over a flat batch holding each ranking's completions
    one prompt after another."""
    chosen, rejected, gaps = [], [], []
    offset = 0
    for ranks in rankings:
        for pair in expand_pairs(ranks, best_worst_only):
            chosen.append(offset + pair.chosen)
            rejected.append(offset + pair.rejected)
            gaps.append(pair.rank_gap)
        offset += len(ranks)
    chosen_t, rejected_t, gaps_t = (torch.tensor(v, dtype=torch.long) for v in (chosen, rejected, gaps))
    return chosen_t, rejected_t, gaps_t


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float | None = None, centering: float = 0.0
) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected - margin) over pairs, plus `centering` x mean((r_chosen +
    r_rejected)^2), which keeps scores near zero (the loss alone only fixes differences)."""
    if chosen.shape != rejected.shape or chosen.numel() == 0:
        raise ValueError(f"chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} must be equal, non-empty")
    if centering < 0:
        raise ValueError(f"centering must be >= 0, got {centering}")
    difference = chosen - rejected
    if margin is not None:
        difference = difference - margin
    loss = -F.logsigmoid(difference).mean()
    if centering:
        loss = loss + centering * ((chosen + rejected) ** 2).mean()
    return loss


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs scored in the right order; a tie counts one half (an untrained model scores 0.5)."""
    right = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    return float(right.mean())


def mean_margin(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Mean of r_chosen - r_rejected over pairs."""
    return float((chosen - rejected).float().mean())


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows right-padded with `pad_id` to the longest (a reward model's input), and their lengths."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return tokens, lengths


@torch.no_grad()
def score_rows(model: RewardModel, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 16) -> list[float]:
    """Scores of token rows that each end with a reply's `<|im_end|>`, `batch_size` rows per forward pass."""
    device = next(model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(rows), batch_size):
        tokens, lengths = pad_rows(rows[start : start + batch_size], pad_id)
        scores += model(tokens.to(device), lengths.to(device)).tolist()
    return scores


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """What makes two tokenizers encode alike, hashed: a published encoding's name (or a trained one's file
    content, wherever that file lies), the vocabulary size and the special token ids."""
    what = "file:" + file_sha256(tokenizer.name) if isinstance(tokenizer, BPETokenizer) else tokenizer.name
    identity = json.dumps([what, tokenizer.vocab_size, sorted(tokenizer.special_tokens.items())])
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def tokenizer_record(spec: str, tokenizer: Tokenizer) -> dict:
    """How reward checkpoints and preference sets record their tokenizer: spec, name, size, fingerprint."""
    return {"spec": spec, "name": tokenizer.name, "vocab_size": tokenizer.vocab_size,
            "fingerprint": tokenizer_fingerprint(tokenizer)}


def require_same_tokenizer(reward_meta: dict, tokenizer: Tokenizer, what: str) -> None:
    """Refuse a reward model that reads another tokenizer's ids than `tokenizer` (`what`: whose it is, e.g.
    "the policy"): its scores of those ids would be meaningless."""
    recorded = reward_meta.get("tokenizer") or {}
    if recorded.get("fingerprint") != tokenizer_fingerprint(tokenizer):
        raise CheckpointError(
            f"the reward model reads tokenizer {recorded.get('name')!r} ({recorded.get('vocab_size')} ids), "
            f"{what} uses {tokenizer.name!r} ({tokenizer.vocab_size} ids): train a reward model from a checkpoint "
            "of the same tokenizer"
        )


def reward_model_shape(trunk: GPTConfig) -> dict:
    """A reward model's shape as checkpoint metadata: its trunk's GPT config and the head."""
    return {**trunk.to_dict(), HEAD_KEY: "linear"}


def load_reward_model(checkpoint_dir: str | Path, device: str = "cpu") -> tuple[RewardModel, dict]:
    """A reward model in eval mode and its checkpoint metadata, from a checkpoint folder or a run folder
    (its newest checkpoint); the metadata is checked before anything is allocated."""
    path = find_checkpoint(checkpoint_dir)
    meta = read_meta(path)
    if meta.get("stage") != STAGE:
        raise CheckpointError(f"{path}: a {meta.get('stage') or 'language model'} checkpoint, not a reward model "
                              "(train one with `fineforge train reward`)")
    shape = dict(meta["model"])
    end_id = (meta.get("reward") or {}).get("end_id")
    if shape.pop(HEAD_KEY, None) is None or not isinstance(end_id, int):
        raise CheckpointError(f"{path}: reward checkpoint without '{HEAD_KEY}' in its model or 'reward.end_id'")
    try:
        config = GPTConfig.from_dict(shape)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: trunk config refused: {exc}") from exc
    stored = stored_parameters(verify_file(path, meta, MODEL_FILE))
    expected = config.num_parameters() + config.n_embd + 1  # trunk and head
    if stored != expected:  # before allocating: the metadata cannot make us allocate more than the file holds
        raise CheckpointError(f"{path}: holds {stored:,} parameters, the reward model needs {expected:,}")
    try:
        model = RewardModel(GPT(config), end_id)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    load_weights_into(model, path, meta)
    return model.to(device).eval(), meta
