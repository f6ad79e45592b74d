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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fineforge.model.gpt import GPT


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


def trunk_hidden_states(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """The GPT's final normalised hidden states (B, T, C), taken from its last norm during a forward pass
    that projects only the last position onto the vocabulary."""
    captured: list[torch.Tensor] = []
    handle = model.ln_f.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        model(tokens, last_only=True)
    finally:
        handle.remove()
    return captured[0]


class RewardModel(nn.Module):
    """A GPT trunk (e.g. from an SFT checkpoint) and a linear scalar head read at the last end token."""

    def __init__(self, trunk: GPT, end_id: int) -> None:
        super().__init__()
        if not 0 <= end_id < trunk.config.vocab_size:
            raise ValueError(f"end_id {end_id} is outside the model's vocabulary of {trunk.config.vocab_size}")
        self.trunk = trunk
        self.end_id = end_id
        self.head = nn.Linear(trunk.config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(trunk.config.n_embd + 1))
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) float32 of right-padded rows; `lengths` (B,) bounds each row's real tokens (needed
        only when the padding id could be the end token itself)."""
        hidden = trunk_hidden_states(self.trunk, tokens)
        ends = last_token_positions(tokens, self.end_id, lengths)
        at_end = hidden[torch.arange(tokens.shape[0], device=tokens.device), ends]
        return self.head(at_end).squeeze(-1).float()


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
