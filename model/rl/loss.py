"""The clipped policy-gradient loss of GRPO / DAPO / Dr. GRPO, the k3 KL estimator, and its diagnostics.

Shapes: per-token log-probs, old log-probs, reference log-probs and the mask are (S, T) over S completions
(positions that are not completion tokens have mask 0); advantages are (S,), one per completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fineforge.model.rl.config import GRPOConfig

# exp() of a larger log-ratio overflows float32; the k3 estimate is clamped there (far beyond useful values)
KL_LOG_RATIO_LIMIT = 20.0


@dataclass
class PolicyLoss:
    """The loss to backpropagate and detached diagnostics: share of clipped tokens, mean k3 KL, mean ratio."""

    loss: torch.Tensor
    clip_fraction: torch.Tensor
    kl: torch.Tensor
    ratio_mean: torch.Tensor


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values` where `mask` is non-zero; masked positions count as 0 even when they hold inf or nan."""
    kept = torch.where(mask.bool(), values, torch.zeros_like(values))
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is 1 (0 when the mask is empty)."""
    return masked_sum(values, mask) / mask.to(values.dtype).sum().clamp(min=1.0)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference) from samples of the policy: r - 1 - log r with
    r = p_ref / p; never negative, unbiased, lower variance than -log r (Schulman's note on KL estimators)."""
    log_r = (ref_logp - logp).clamp(-KL_LOG_RATIO_LIMIT, KL_LOG_RATIO_LIMIT)
    return torch.exp(log_r) - 1.0 - log_r


def clipped_tokens(ratio: torch.Tensor, advantages: torch.Tensor, config: GRPOConfig) -> torch.Tensor:
    """Bool mask of the tokens whose clipped term is the active one (their gradient is zero)."""
    high = (advantages > 0) & (ratio > 1.0 + config.clip_high)
    low = (advantages < 0) & (ratio < 1.0 - config.clip_low)
    return high | low


def normalise(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    config: GRPOConfig,
    batch_tokens: float | None = None,
    batch_sequences: int | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss (S, T) to a scalar by the configured normalisation.

    When a batch is split into micro-batches (or over ranks), pass the whole batch's completion-token count
    and number of completions: the micro-batch losses then add up to the loss of the whole batch.
    """
    counts = mask.to(per_token.dtype)
    sequences = batch_sequences if batch_sequences is not None else per_token.shape[0]
    if config.normalisation == "token":
        tokens = counts.sum() if batch_tokens is None else per_token.new_tensor(float(batch_tokens))
        return masked_sum(per_token, mask) / tokens.clamp(min=1.0)
    if config.normalisation == "sequence":
        per_sequence = masked_sum(per_token, mask, dim=1) / counts.sum(dim=1).clamp(min=1.0)
        return per_sequence.sum() / max(sequences, 1)
    return masked_sum(per_token, mask) / (max(sequences, 1) * config.constant_normaliser)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: GRPOConfig,
    ref_logp: torch.Tensor | None = None,
    batch_tokens: float | None = None,
    batch_sequences: int | None = None,
    entropy: torch.Tensor | None = None,
) -> PolicyLoss:
    """The clipped surrogate -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) per token, r = p / p_old,
    plus kl_beta x k3(policy || reference), plus entropy_weight x the policy's entropy (S, T) at each position,
    reduced by `normalise`."""
    if not logp.shape == old_logp.shape == mask.shape:
        raise ValueError(f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, mask {tuple(mask.shape)} differ")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must be (completions,) = {tuple(logp.shape[:1])}, got {tuple(advantages.shape)}")
    if config.kl_beta > 0 and ref_logp is None:
        raise ValueError("kl_beta > 0 needs the reference model's log-probs (ref_logp)")
    if config.entropy_weight != 0 and entropy is None:
        raise ValueError("entropy_weight != 0 needs the policy's entropy at each position (entropy)")
    adv = advantages.to(logp.dtype)[:, None]
    keep, zero = mask.bool(), torch.zeros_like(logp)
    # positions outside the mask start at ratio 1 and KL 0, so nothing they hold reaches the loss or its gradient
    ratio = torch.exp(torch.where(keep, logp - old_logp.detach(), zero))
    clipped_ratio = ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    per_token = -torch.minimum(ratio * adv, clipped_ratio * adv)
    kl = zero
    if ref_logp is not None:
        kl = kl_k3(torch.where(keep, logp, zero), torch.where(keep, ref_logp.detach(), zero))
        per_token = per_token + config.kl_beta * kl
    if config.entropy_weight != 0:
        per_token = per_token + config.entropy_weight * torch.where(keep, entropy, zero)
    loss = normalise(per_token, mask, config, batch_tokens, batch_sequences)
    with torch.no_grad():
        clip_fraction = masked_mean(clipped_tokens(ratio, adv, config).to(logp.dtype), mask)
        return PolicyLoss(loss, clip_fraction, masked_mean(kl.detach(), mask), masked_mean(ratio, mask))


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the next-token distribution at each position of logits (..., V)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
