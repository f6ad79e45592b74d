"""Reward models for RLHF tests without training one: the trunk of a tiny checkpoint with a seeded random head,
saved as the reward stage saves its checkpoints, and its exact opposite (a judge that disagrees on every pair).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fineforge.model.checkpoint import find_checkpoint, load_weights_into, model_config, read_meta, save_checkpoint
from fineforge.model.gpt import GPT
from fineforge.model.optim import adamw
from fineforge.model.reward_model import STAGE, RewardModel, reward_model_shape, tokenizer_record
from fineforge.model.tokenizer import IM_END, load_tokenizer


def reward_model_checkpoint(run_dir: Path, trunk_dir: Path, seed: int = 0, sign: float = 1.0) -> Path:
    """A reward model on the trunk of the checkpoint in `trunk_dir` whose head is seeded random weights times
    `sign` (-1: every score negated), saved in `run_dir/checkpoints`; returns `run_dir`."""
    path = find_checkpoint(trunk_dir)
    meta = read_meta(path)
    trunk = GPT(model_config(path, meta))
    load_weights_into(trunk, path, meta)
    spec = meta["tokenizer"]["spec"]
    tokenizer = load_tokenizer(spec)
    model = RewardModel(trunk, tokenizer.encode_special(IM_END))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(sign * torch.randn(model.head.weight.shape, generator=generator))
    optimizer = adamw(model, weight_decay=0.0, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    reward_meta = {"model": reward_model_shape(trunk.config), "stage": STAGE,
                   "tokenizer": tokenizer_record(spec, tokenizer), "reward": {"end_id": model.end_id}}
    save_checkpoint(Path(run_dir) / "checkpoints", 1, model, optimizer, reward_meta)
    return Path(run_dir)
