"""RLHF's part of the RL stage: rewards from a reward model (batched, on each rank), the held-out judge, the
reward-hacking watch's evaluation, and the best checkpoint the watch stops at.

A reward model reads its score at a reply's closing `<|im_end|>` (model/reward_model.py); a reply that never
closed (it hit the token budget) has no score there and gets the stage's `unfinished_reward` instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fineforge.model.checkpoint import CHECKPOINTS_SUBDIR, latest_checkpoint
from fineforge.model.reward_model import RewardModel, score_rows
from fineforge.model.rl.rollouts import Rollout, RolloutSampler
from fineforge.model.rl.watch import reply_statistics
from fineforge.model.verifiers import SafeScorer

BEST_CHECKPOINT = "best_checkpoint"  # in run_dir: the checkpoint of the best judge score so far
WATCH_METRICS = ("reward_model", "judge", "length", "repetition", "distinct_1", "distinct_2")

Judge = Callable[[Sequence[Rollout], Sequence[Mapping[str, Any]]], list[float]]  # replies, each one's metadata


@dataclass(frozen=True)
class ModelScorer:
    """A reward model scoring roll-outs, `batch_size` rows per forward pass; an unfinished reply gets `unfinished`."""

    model: RewardModel
    pad_id: int
    unfinished: float = 0.0
    batch_size: int = 16

    def __call__(self, rollouts: Sequence[Rollout], metadata: Sequence[Mapping[str, Any]] = ()) -> list[float]:
        done = [i for i, r in enumerate(rollouts) if r.finished]
        scores = [self.unfinished] * len(rollouts)
        rows = [rollouts[i].prompt + rollouts[i].completion for i in done]
        for i, score in zip(done, score_rows(self.model, rows, self.pad_id, self.batch_size), strict=True):
            scores[i] = score
        return scores


def verifier_judge(scorer: SafeScorer) -> Judge:
    """A verifier as the judge: each reply's verified reward."""
    return lambda rollouts, metadata: [scorer(m, r.text, finished=r.finished)
                                       for r, m in zip(rollouts, metadata, strict=True)]


def model_rewards(rollouts: Sequence[Rollout], group_size: int, scorer: ModelScorer) -> torch.Tensor:
    """Set each roll-out's reward to the reward model's score; the rewards as (groups, group_size)."""
    for rollout, reward in zip(rollouts, scorer(rollouts), strict=True):
        rollout.reward = reward
    return torch.tensor([r.reward for r in rollouts], dtype=torch.float32).view(-1, group_size)


def watch_sums(sampler: RolloutSampler, prompts: Sequence[list[int]], metadata: Sequence[Mapping[str, Any]],
               samples: int, seed: int, first_group: int, chunk_prompts: int, scorer: ModelScorer,
               judge: Judge) -> list[float]:
    """This rank's replies to its held-out prompts (`samples` each, fixed seeds): the sums of WATCH_METRICS over
    them (the statistics of all of them, times their count) and the count, to add over ranks and divide."""
    rollouts: list[Rollout] = []
    for first in range(0, len(prompts), chunk_prompts):
        rollouts += sampler.sample(prompts[first : first + chunk_prompts], samples, seed, first_group + first)
    if not rollouts:
        return [0.0] * (len(WATCH_METRICS) + 1)
    replies = [m for m in metadata for _ in range(samples)]
    statistics = reply_statistics([r.text for r in rollouts])
    count = len(rollouts)
    return [sum(scorer(rollouts)), sum(judge(rollouts, replies)),
            *(statistics[name] * count for name in WATCH_METRICS[2:]), float(count)]


def keep_best_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint, hard-linked as run_dir/best_checkpoint (replacing the one before): it outlives the
    pruning of old checkpoints without a copy of its files."""
    source = latest_checkpoint(run_dir / CHECKPOINTS_SUBDIR)
    if source is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir / CHECKPOINTS_SUBDIR} to keep as the best")
    target, tmp, old = (run_dir / f"{prefix}{BEST_CHECKPOINT}{suffix}"
                        for prefix, suffix in (("", ""), (".", ".tmp"), (".", ".old")))
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(source, tmp, copy_function=os.link)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
