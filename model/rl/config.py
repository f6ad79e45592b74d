"""GRPOConfig: how rewards become advantages and how the clipped policy-gradient loss is normalised."""

from __future__ import annotations

from dataclasses import dataclass

NORMALISATIONS = ("token", "sequence", "constant")


@dataclass
class GRPOConfig:
    """Options of the group-relative policy-gradient loss (docs/rl.md).

    - advantages: reward minus the group's mean, divided by the group's std (+ `std_eps`) when
      `scale_by_std` (GRPO), not divided in Dr. GRPO;
    - `normalisation`: "token" averages over every completion token of the batch (DAPO), "sequence"
      averages each completion over its own tokens and then over completions (GRPO), "constant" divides
      the token sum by completions x `constant_normaliser` (Dr. GRPO; the generation budget);
    - the importance ratio is clipped to [1 - clip_low, 1 + clip_high] (DAPO's clip-higher: 0.28 high);
    - `kl_beta` weights the k3 estimate of KL(policy || reference) per token (0: no reference needed);
    - groups whose rewards are all equal carry no signal: counted always, dropped when `skip_zero_variance`;
    - `entropy_weight` x the entropy of each completion position's next-token distribution is added to the
      per-token loss: > 0 sharpens the policy (entropy minimisation), < 0 is PPO's entropy bonus.
    """

    scale_by_std: bool = True
    std_eps: float = 1e-6
    normalisation: str = "token"
    constant_normaliser: int | None = None
    clip_low: float = 0.2
    clip_high: float = 0.2
    kl_beta: float = 0.0
    skip_zero_variance: bool = False
    entropy_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"GRPOConfig.normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        if self.normalisation == "constant" and (self.constant_normaliser is None or self.constant_normaliser < 1):
            raise ValueError(
                "GRPOConfig.constant_normaliser must be a positive token count (the generation budget) "
                f"when normalisation is 'constant', got {self.constant_normaliser!r}"
            )
        if not 0.0 <= self.clip_low < 1.0:
            raise ValueError(f"GRPOConfig.clip_low must be in [0, 1), got {self.clip_low}")
        if self.clip_high < 0.0:
            raise ValueError(f"GRPOConfig.clip_high must be >= 0, got {self.clip_high}")
        if self.kl_beta < 0.0:
            raise ValueError(f"GRPOConfig.kl_beta must be >= 0, got {self.kl_beta}")
        if self.std_eps <= 0.0:
            raise ValueError(f"GRPOConfig.std_eps must be > 0, got {self.std_eps}")

    @classmethod
    def dr_grpo(cls, generation_budget: int, **overrides) -> GRPOConfig:
        """Dr. GRPO: no std division, token sums divided by a constant (the generation budget)."""
        return cls(scale_by_std=False, normalisation="constant", constant_normaliser=generation_budget, **overrides)

    @classmethod
    def dapo(cls, **overrides) -> GRPOConfig:
        """DAPO: token-level normalisation, clip-higher (0.2 / 0.28), zero-variance groups dropped."""
        settings = dict(normalisation="token", clip_low=0.2, clip_high=0.28, skip_zero_variance=True)
        return cls(**{**settings, **overrides})
