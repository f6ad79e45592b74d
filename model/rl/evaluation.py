"""Held-out evaluation of a policy: pass@1 and pass@k from n samples per prompt.

pass@k is the chance that at least one of k samples is right. From n >= k samples with c right, the
unbiased estimate is 1 - C(n - c, k) / C(n, k) (Chen et al., 2021, *Evaluating Large Language Models
Trained on Code*); for k = 1 it is c / n. The held-out set and its sampling seeds are fixed, so two
evaluations differ only by the policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fineforge.model.rl.rollouts import RolloutSampler, score_groups
from fineforge.model.verifiers import SafeScorer


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimate from `samples` samples of which `correct` are right."""
    if not 0 < k <= samples or not 0 <= correct <= samples:
        raise ValueError(f"need 0 < k <= samples and 0 <= correct <= samples, got k={k}, {correct}/{samples}")
    if samples - correct < k:
        return 1.0
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


@dataclass
class HeldOutResult:
    """Per held-out prompt: how many of its samples passed; and the samples' summed reward and length."""

    correct: list[int]
    samples_per_prompt: int
    reward_sum: float
    length_sum: int

    def pass_at(self, k: int) -> float:
        """Mean pass@k over the prompts (0 when there are none)."""
        if not self.correct:
            return 0.0
        return sum(pass_at_k(self.samples_per_prompt, c, k) for c in self.correct) / len(self.correct)


def held_out_passes(sampler: RolloutSampler, prompts: Sequence[list[int]], metadata: Sequence[Mapping[str, Any]],
                    samples: int, scorer: SafeScorer, threshold: float, seed: int, first_group: int,
                    chunk_prompts: int) -> HeldOutResult:
    """Sample `samples` replies per prompt (`chunk_prompts` prompts per batch); a reply passes when its reward
    reaches `threshold`. Prompt i is group `first_group + i` of the seeded held-out set."""
    result = HeldOutResult([], samples, 0.0, 0)
    for first in range(0, len(prompts), chunk_prompts):
        part = prompts[first : first + chunk_prompts]
        rollouts = sampler.sample(part, samples, seed, first_group + first)
        rewards = score_groups(rollouts, metadata[first : first + len(part)], samples, scorer)
        result.correct += (rewards >= threshold).sum(dim=1).tolist()
        result.reward_sum += float(rewards.sum())
        result.length_sum += sum(len(r.completion) for r in rollouts)
    return result
