"""Per-token log-probs of completions under a GPT, for the policy, old-policy and reference terms of RL.

A batch of roll-outs is prompt + completion per row, right-padded. Position t of the outputs scores token
t + 1 of the row given tokens 0..t, so outputs are (B, T - 1) and `completion_mask[b, t]` is 1 exactly where
token t + 1 of row b belongs to the completion (the closing `<|im_end|>` included, so the model learns to stop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fineforge.model.gpt import GPT
from fineforge.model.rl.loss import token_entropy


@dataclass
class RolloutBatch:
    """Prompt + completion token rows (B, T), right-padded, and the completion mask (B, T - 1) of their targets."""

    tokens: torch.Tensor
    completion_mask: torch.Tensor

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)


def batch_rollouts(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> RolloutBatch:
    """Rows prompt_i + completion_i padded on the right with `pad_id` (any id: padding is masked out)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if not prompts:
        raise ValueError("no roll-outs to batch")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token to condition the completion on")
    width = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width - 1), dtype=torch.float32)
    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        end = len(prompt) + len(completion)
        tokens[row, :end] = torch.tensor([*prompt, *completion], dtype=torch.long)
        mask[row, len(prompt) - 1 : end - 1] = 1.0
    return RolloutBatch(tokens, mask)


def completion_logprobs(
    model: GPT, tokens: torch.Tensor, temperature: float = 1.0, with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(token t + 1 | tokens 0..t) for every row, (B, T - 1) float32, under the model's logits divided
    by `temperature` (use the sampling temperature, so the ratio to the sampling policy is right); with
    `with_entropy`, also the entropy of each next-token distribution (B, T - 1), detached unless `entropy_grad`
    (an entropy term of the loss).

    Gradients flow when called with grad enabled (the policy term); wrap in torch.no_grad() for the old
    policy and the reference.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be (batch, length >= 2), got shape {tuple(tokens.shape)}")
    logits, _ = model(tokens[:, :-1])
    logits = logits.float() / temperature
    targets = tokens[:, 1:]
    logp = -F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    entropy = None
    if with_entropy:
        entropy = token_entropy(logits if entropy_grad else logits.detach())
    return logp.view(targets.shape), entropy
