"""The roll-out buffer: one roll-out batch turned into the micro-batches of several optimizer steps.

Each rank holds its own rows (its prompts' groups). Before the first update the policy's log-probs of every
row are recorded (the "old" policy of the importance ratio), and the frozen reference's when a KL term is
kept. Then, for each of `epochs` passes over the rows, in a seeded order, the rows are cut into
`minibatches` optimizer steps of micro-batches. A row of a skipped group keeps its place with a zero
weight (it neither trains nor counts in a normaliser), so every rank runs the same number of micro-steps.

The loss of a micro-batch is normalised by its optimizer step's totals over all ranks (trained tokens and
trained completions) and multiplied by micro-steps x ranks, which the trainer's accumulation and DDP's
averaging divide out again: the gradient is exactly that of the whole step's loss (docs/rl.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fineforge.model.rl.logprobs import batch_rollouts, completion_logprobs
from fineforge.model.rl.rollouts import Rollout


@dataclass
class TrainingRow:
    """One roll-out as trained: its tokens, the weight of each completion token (1 trained, 0 not), its
    advantage, and the old policy's (and the reference's) log-prob of each completion token."""

    prompt: list[int]
    completion: list[int]
    weights: torch.Tensor
    advantage: float
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None

    @property
    def start(self) -> int:
        """The output position that scores the first completion token."""
        return len(self.prompt) - 1


@dataclass
class MicroBatch:
    """Rows padded to one width: tokens (B, T); weights, old and reference log-probs (B, T - 1); advantages
    (B,); the normalisers of its optimizer step over all ranks; the factor undoing the trainer's averaging."""

    tokens: torch.Tensor
    weights: torch.Tensor
    advantages: torch.Tensor
    old_logp: torch.Tensor
    ref_logp: torch.Tensor | None
    step_tokens: float
    step_sequences: float
    scale: float

    def to(self, device: torch.device) -> MicroBatch:
        move = {name: getattr(self, name) for name in ("tokens", "weights", "advantages", "old_logp", "ref_logp")}
        moved = {k: v.to(device, non_blocking=True) if v is not None else None for k, v in move.items()}
        return MicroBatch(**moved, step_tokens=self.step_tokens, step_sequences=self.step_sequences, scale=self.scale)


def training_rows(rollouts: Sequence[Rollout], advantages: torch.Tensor, kept_groups: torch.Tensor,
                  group_size: int) -> list[TrainingRow]:
    """Rows of scored roll-outs, group after group; advantages (groups, G); rows of groups not kept weigh 0."""
    rows = []
    for index, rollout in enumerate(rollouts):
        group = index // group_size
        weights = torch.tensor(rollout.trained, dtype=torch.float32) * float(kept_groups[group])
        rows.append(TrainingRow(rollout.prompt, rollout.completion, weights, float(advantages.flatten()[index])))
    return rows


def pad_rows(rows: Sequence[TrainingRow], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor | None]:
    """Tokens (B, T) right-padded with `pad_id`; weights, old and reference log-probs (B, T - 1) in place."""
    tokens = batch_rollouts([r.prompt for r in rows], [r.completion for r in rows], pad_id).tokens
    shape = (len(rows), tokens.shape[1] - 1)
    weights, old = torch.zeros(shape), torch.zeros(shape)
    ref = torch.zeros(shape) if rows[0].ref_logp is not None else None
    for i, row in enumerate(rows):
        span = slice(row.start, row.start + len(row.completion))
        weights[i, span] = row.weights
        if row.old_logp is not None:
            old[i, span] = row.old_logp
        if ref is not None:
            ref[i, span] = row.ref_logp
    return tokens, weights, old, ref


@torch.no_grad()
def row_logprobs(model: nn.Module, rows: Sequence[TrainingRow], chunk: int, pad_id: int, temperature: float,
                 device: torch.device) -> list[torch.Tensor]:
    """Each row's completion-token log-probs under `model` (1-D, on the CPU), `chunk` rows per forward pass."""
    out: list[torch.Tensor] = []
    for first in range(0, len(rows), chunk):
        part = rows[first : first + chunk]
        tokens = pad_rows(part, pad_id)[0].to(device)
        logp, _ = completion_logprobs(model, tokens, temperature)
        logp = logp.float().cpu()
        out += [logp[i, row.start : row.start + len(row.completion)] for i, row in enumerate(part)]
    return out


@dataclass(frozen=True)
class BufferLayout:
    """How a rank's rows become optimizer steps: passes over them, optimizer steps per pass, rows per
    micro-batch, ranks (the world's micro-batches of one step count micro_steps x world_size)."""

    epochs: int
    minibatches: int
    micro_batch_size: int
    world_size: int

    def micro_steps(self, rows: int) -> int:
        return rows // (self.minibatches * self.micro_batch_size)


def step_order(rows: int, layout: BufferLayout, seed: int) -> list[list[int]]:
    """The row indices of each optimizer step of the buffer: every pass a seeded order, cut in `minibatches`."""
    generator = torch.Generator().manual_seed(seed)
    per_step = rows // layout.minibatches
    steps = []
    for _ in range(layout.epochs):
        order = torch.randperm(rows, generator=generator).tolist()
        steps += [order[i : i + per_step] for i in range(0, rows, per_step)]
    return steps


def micro_batches(rows: Sequence[TrainingRow], steps: list[list[int]], step_totals: torch.Tensor,
                  layout: BufferLayout, pad_id: int) -> list[MicroBatch]:
    """Every micro-batch of the buffer in training order; `step_totals` (steps, 2): each step's trained tokens and
    trained completions over all ranks."""
    micro_steps = layout.micro_steps(len(rows))
    scale = float(micro_steps * layout.world_size)
    out = []
    for indices, (tokens_total, sequences_total) in zip(steps, step_totals.tolist(), strict=True):
        for first in range(0, len(indices), layout.micro_batch_size):
            part = [rows[i] for i in indices[first : first + layout.micro_batch_size]]
            tokens, weights, old, ref = pad_rows(part, pad_id)
            advantages = torch.tensor([r.advantage for r in part], dtype=torch.float32)
            out.append(MicroBatch(tokens, weights, advantages, old, ref, tokens_total, sequences_total, scale))
    return out


def local_step_totals(rows: Sequence[TrainingRow], steps: list[list[int]]) -> torch.Tensor:
    """(steps, 2): this rank's trained tokens and trained completions (rows with any weight) of each step."""
    return torch.tensor([
        [sum(float(rows[i].weights.sum()) for i in indices), sum(float(rows[i].weights.any()) for i in indices)]
        for indices in steps
    ], dtype=torch.float64)  # fmt: skip
