"""The KL weight beta: fixed, or adapted towards a target KL (Ziegler et al., 2019, *Fine-Tuning Language Models
from Human Preferences*, §2.2).

After each roll-out batch the adaptive controller moves beta by the batch's measured KL to the reference:

    error = clip(KL / target - 1, -0.2, 0.2)
    beta <- beta * (1 + error * samples / horizon)

so a policy drifting beyond the target is pulled back harder, one that stays close is let go. The measured KL
is the mean over the batch's trained tokens of log pi_old - log pi_ref (the sampled, k1 estimate), taken when
the batch's log-probs are recorded: before any update on it, the same on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_ERROR = 0.2  # Ziegler et al.'s clip of the proportional error


@dataclass
class KLController:
    """beta, adapted when `target` is set (None: fixed)."""

    beta: float
    target: float | None = None
    horizon: int = 10_000  # roll-outs over which a persistent error changes beta by about e^(+-0.2)

    def update(self, measured_kl: float, samples: int) -> float:
        """Adapt beta to the KL measured on a roll-out batch of `samples` replies; the new beta."""
        if self.target is not None:
            error = min(max(measured_kl / self.target - 1.0, -MAX_ERROR), MAX_ERROR)
            self.beta *= 1.0 + error * samples / self.horizon
        return self.beta


def sampled_kl(old_logp: list[torch.Tensor], ref_logp: list[torch.Tensor],
               weights: list[torch.Tensor]) -> tuple[float, float]:
    """The sum of log pi_old - log pi_ref over the trained tokens of some rows, and those tokens' count (to add
    over ranks before dividing)."""
    total = sum(float(((old - ref) * w).sum()) for old, ref, w in zip(old_logp, ref_logp, weights, strict=True))
    return total, sum(float(w.sum()) for w in weights)
