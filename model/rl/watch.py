"""Watching RLHF for reward hacking: reply statistics and a watch over (step, reward-model score, judge score).

A policy trained against a learned reward model can raise that model's score while getting worse by any
other measure (long, repetitive replies; "the the the" scoring high). Every N steps the RL stage records
the reward model's mean score, a held-out judge's mean score and the reply statistics below; the watch
fires when, over the last `window` evaluations, the reward-model score rises while the judge's falls,
and names the step with the best judge score to stop at.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

Reply = str | Sequence[Hashable]


def _units(reply: Reply) -> list[Hashable]:
    """A reply as a list of units: a string's whitespace-separated words, or the given tokens."""
    return reply.split() if isinstance(reply, str) else list(reply)


def ngrams(units: Sequence[Hashable], n: int) -> list[tuple]:
    """The n-grams of a sequence, in order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]


def duplicate_ngram_share(reply: Reply, n: int = 2) -> float:
    """Share of a reply's n-grams that repeat an earlier one (0: no repetition; "the the the the" -> 2/3)."""
    grams = ngrams(_units(reply), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(replies: Sequence[Reply], n: int) -> float:
    """Distinct n-grams over all n-grams of a set of replies (Li et al., 2016); 0 when there are none."""
    grams = [g for reply in replies for g in ngrams(_units(reply), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def reply_statistics(replies: Sequence[Reply], n: int = 2) -> dict[str, float]:
    """Mean length (units), mean duplicate n-gram share, distinct-1 and distinct-2 of a set of replies."""
    if not replies:
        raise ValueError("no replies to measure")
    return {
        "length": float(np.mean([len(_units(r)) for r in replies])),
        "repetition": float(np.mean([duplicate_ngram_share(r, n) for r in replies])),
        "distinct_1": distinct_n(replies, 1),
        "distinct_2": distinct_n(replies, 2),
    }


@dataclass(frozen=True)
class WatchConfig:
    """Fire when, over the last `window` evaluations, the least-squares line through the reward-model
    scores rises by more than `min_rise` while the judge's line falls by more than `min_fall` (changes
    measured across the window, so they do not depend on how often evaluations run)."""

    window: int = 5
    min_rise: float = 0.0
    min_fall: float = 0.0

    def __post_init__(self) -> None:
        if self.window < 3:
            raise ValueError(f"WatchConfig.window must be >= 3 evaluations (a trend, not a jump), got {self.window}")
        if self.min_rise < 0 or self.min_fall < 0:
            raise ValueError(f"WatchConfig.min_rise / min_fall must be >= 0, got {self.min_rise} / {self.min_fall}")


@dataclass(frozen=True)
class WatchPoint:
    step: int
    reward_model: float
    judge: float


def fitted_change(steps: Sequence[float], values: Sequence[float]) -> float:
    """Change across the steps of the least-squares line through (steps, values)."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    dx = x - x.mean()
    slope = float((dx * (y - y.mean())).sum() / (dx * dx).sum())
    return slope * float(x[-1] - x[0])


@dataclass
class RewardHackingWatch:
    """Feed it one point per evaluation with `update`; it returns True from the evaluation where it fires."""

    config: WatchConfig = field(default_factory=WatchConfig)
    points: list[WatchPoint] = field(default_factory=list)
    fired_at: int | None = None

    def update(self, step: int, reward_model: float, judge: float) -> bool:
        """Record an evaluation; True once the reward-model score rises while the judge falls."""
        if self.points and step <= self.points[-1].step:
            raise ValueError(f"steps must increase: {step} after {self.points[-1].step}")
        self.points.append(WatchPoint(int(step), float(reward_model), float(judge)))
        if self.fired_at is None and self._diverging():
            self.fired_at = int(step)
        return self.fired_at is not None

    def _diverging(self) -> bool:
        recent = self.points[-self.config.window :]
        if len(recent) < self.config.window:
            return False
        steps = [p.step for p in recent]
        rise = fitted_change(steps, [p.reward_model for p in recent])
        fall = -fitted_change(steps, [p.judge for p in recent])
        return rise > self.config.min_rise and fall > self.config.min_fall

    def state(self) -> dict:
        """The watch as JSON (saved with every checkpoint, so a resumed run watches on)."""
        return {"points": [[p.step, p.reward_model, p.judge] for p in self.points], "fired_at": self.fired_at}

    @classmethod
    def restored(cls, config: WatchConfig, state: dict) -> RewardHackingWatch:
        """A watch continued from `state()`."""
        return cls(config, [WatchPoint(*point) for point in state["points"]], state["fired_at"])

    @property
    def best_step(self) -> int | None:
        """The step with the highest judge score so far (the earliest on a tie), where to stop."""
        if not self.points:
            return None
        return max(self.points, key=lambda p: (p.judge, -p.step)).step
