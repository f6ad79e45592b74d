"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedule of every stage."""

from __future__ import annotations

import inspect
import logging
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from fineforge.model.trainer import TrainerConfig

log = logging.getLogger(__name__)

DECAYS = ("cosine", "linear", "constant")


def adamw(
    module: nn.Module, weight_decay: float, lr: float, betas: tuple[float, float], device_type: str
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (not norms or biases); fused on CUDA."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    log.info(
        "optimizer: %d decayed tensors (%d params), %d without decay (%d params), fused=%s",
        len(decay), sum(p.numel() for p in decay), len(no_decay), sum(p.numel() for p in no_decay), fused,
    )
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def learning_rate(step: int, config: TrainerConfig) -> float:
    """The learning rate of optimizer step `step` (0-based): linear warmup, then decay to min_lr."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.decay == "constant":
        return config.lr
    decay_steps = config.decay_steps or config.max_steps
    if step >= decay_steps:
        return config.min_lr
    progress = (step - config.warmup_steps) / max(1, decay_steps - config.warmup_steps)
    if config.decay == "cosine":
        return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)
    return config.lr - progress * (config.lr - config.min_lr)
