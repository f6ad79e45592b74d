"""Roll-outs: G completions per prompt sampled by the batched engine, scored by a verifier.

Row r of prompt group g is seeded with `row_seed(seed, g * G + r)`, where g counts the groups of the whole
roll-out batch (all ranks): a roll-out batch is the same whatever the number of ranks that share it, and a
resumed run samples exactly what the interrupted one would have.

A roll-out's completion is what the model produced: the sampled tokens, the tool outputs the runtime
inserted (not trained: `trained` is 0 there), and the stop token when the reply ended on it (trained, so
that the model learns to stop). The verifier reads the reply's text, tool outputs included.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from fineforge.model.engine import Completion, Engine, Request, SamplingConfig, row_seed
from fineforge.model.tokenizer import Tokenizer
from fineforge.model.tool_loop import ToolLoop
from fineforge.model.verifiers import SafeScorer


@dataclass
class Rollout:
    """One sampled reply to a prompt, its reward, and which of its tokens the policy sampled."""

    prompt: list[int]
    completion: list[int]
    trained: list[int]  # 1 per completion token the model sampled, 0 per token a tool inserted
    text: str
    finish_reason: str
    reward: float = 0.0

    @property
    def finished(self) -> bool:
        """Ended on its stop token (not at the budget, not inside an unclosed tool call)."""
        return self.finish_reason == "stop"


@dataclass(frozen=True)
class RolloutSampler:
    """How roll-outs are sampled: the engine, the sampling settings (stop token included), the tools."""

    engine: Engine
    sampling: SamplingConfig
    tokenizer: Tokenizer
    stop_id: int
    tools: ToolLoop | None = None
    threads: int | None = None  # torch's CPU threads while sampling (None: the process's)

    def sample(self, prompts: Sequence[list[int]], group_size: int, seed: int, first_group: int) -> list[Rollout]:
        """`group_size` roll-outs per prompt (prompt i's group is `first_group + i` of its batch), prompt by prompt."""
        requests = [
            Request(prompt, seed=row_seed(seed, (first_group + i) * group_size + r))
            for i, prompt in enumerate(prompts) for r in range(group_size)
        ]  # fmt: skip
        with torch.no_grad(), cpu_threads(self.threads):
            completions = self.engine.generate_batch(requests, self.sampling, tools=self.tools)
        return [self._rollout(request.prompt, c) for request, c in zip(requests, completions, strict=True)]

    def _rollout(self, prompt: Sequence[int], completion: Completion) -> Rollout:
        text = self.tokenizer.decode(completion.tokens)
        tokens, trained = list(completion.tokens), list(completion.loss_mask)
        if completion.stopped:
            tokens.append(self.stop_id)
            trained.append(1)
        return Rollout(list(prompt), tokens, trained, text, completion.finish_reason)


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to `count` inside the block (None: left as they are)."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count is not None:
            torch.set_num_threads(before)


def score_groups(rollouts: Sequence[Rollout], metadata: Sequence[Mapping[str, Any]], group_size: int,
                 scorer: SafeScorer) -> torch.Tensor:
    """Set each roll-out's reward (group i answers `metadata[i]`); the rewards as (groups, group_size)."""
    if len(rollouts) != len(metadata) * group_size:
        raise ValueError(f"{len(rollouts)} roll-outs for {len(metadata)} prompts x {group_size} samples")
    for index, rollout in enumerate(rollouts):
        rollout.reward = scorer(metadata[index // group_size], rollout.text, finished=rollout.finished)
    return torch.tensor([r.reward for r in rollouts], dtype=torch.float32).view(len(metadata), group_size)


@dataclass
class RolloutStats:
    """Sums over one rank's roll-out batch, to add over ranks (`as_tensor`) before they become metrics."""

    rewards: float = 0.0
    squared_rewards: float = 0.0
    samples: int = 0
    groups: int = 0
    zero_variance_groups: int = 0
    skipped_groups: int = 0
    finished: int = 0
    generated_tokens: int = 0
    max_length: int = 0
    verifier_errors: int = 0
    seconds: float = 0.0

    SUMMED = ("rewards", "squared_rewards", "samples", "groups", "zero_variance_groups", "skipped_groups",
              "finished", "generated_tokens", "verifier_errors")

    @classmethod
    def of(cls, rollouts: Sequence[Rollout], rewards: torch.Tensor, zero_variance: torch.Tensor,
           skipped: torch.Tensor, verifier_errors: int, started: float) -> RolloutStats:
        """The statistics of a scored roll-out batch sampled from `started` (time.perf_counter) until now."""
        lengths = [len(r.completion) for r in rollouts]
        return cls(
            rewards=float(rewards.sum()), squared_rewards=float((rewards**2).sum()), samples=rewards.numel(),
            groups=rewards.shape[0], zero_variance_groups=int(zero_variance.sum()), skipped_groups=int(skipped.sum()),
            finished=sum(r.finished for r in rollouts), generated_tokens=sum(lengths), max_length=max(lengths),
            verifier_errors=verifier_errors, seconds=time.perf_counter() - started,
        )  # fmt: skip

    def metrics(self, summed: Sequence[float], longest: float, slowest: float) -> dict[str, float]:
        """The logged metrics from the world's sums of SUMMED (in order), longest reply and slowest rank's time."""
        s = dict(zip(self.SUMMED, summed, strict=True))
        mean = s["rewards"] / s["samples"]
        variance = max(0.0, s["squared_rewards"] / s["samples"] - mean**2)
        return {
            "reward_mean": mean, "reward_std": variance**0.5,
            "zero_variance_fraction": s["zero_variance_groups"] / s["groups"],
            "skipped_groups": s["skipped_groups"], "finished_fraction": s["finished"] / s["samples"],
            "response_length_mean": s["generated_tokens"] / s["samples"], "response_length_max": longest,
            "verifier_errors": s["verifier_errors"], "rollout_seconds": slowest,
            "rollout_tokens_per_s": s["generated_tokens"] / max(slowest, 1e-9),
        }  # fmt: skip

    def summed(self) -> list[float]:
        return [float(getattr(self, name)) for name in self.SUMMED]
