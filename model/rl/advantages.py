"""Group-relative advantages: each completion's reward against the other samples of the same prompt."""

from __future__ import annotations

import torch

from fineforge.model.rl.config import GRPOConfig


def _check_rewards(rewards: torch.Tensor) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, samples per prompt), got shape {tuple(rewards.shape)}")


def group_advantages(rewards: torch.Tensor, config: GRPOConfig) -> torch.Tensor:
    """Advantages (P, G) of rewards (P, G): minus the group mean, over the group's std when `scale_by_std`.

    The std is the sample standard deviation (Bessel-corrected, as torch.std); a group whose rewards are
    all equal gets zero advantages in both modes.
    """
    _check_rewards(rewards)
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not config.scale_by_std:
        return centred
    if rewards.shape[1] < 2:
        raise ValueError("dividing by the group's std needs at least 2 samples per prompt")
    return centred / (rewards.std(dim=1, keepdim=True) + config.std_eps)


def zero_variance_groups(rewards: torch.Tensor) -> torch.Tensor:
    """A bool (P,) mask of the groups whose samples all got the same reward (no learning signal)."""
    _check_rewards(rewards)
    return rewards.amax(dim=1) == rewards.amin(dim=1)


def groups_to_train(rewards: torch.Tensor, config: GRPOConfig) -> torch.Tensor:
    """A bool (P,) mask of the groups to train on: all of them, or with `skip_zero_variance` only those
    whose rewards differ (dropping them also keeps their tokens out of a token-level normaliser)."""
    flat = zero_variance_groups(rewards)
    return ~flat if config.skip_zero_variance else torch.ones_like(flat)
