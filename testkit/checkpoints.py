"""A tiny real checkpoint for tests and benchmarks that need a model but not a trained one."""

from __future__ import annotations

from pathlib import Path

import torch

from fineforge.model.checkpoint import save_checkpoint
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.optim import adamw
from fineforge.model.tokenizer import load_tokenizer


def tiny_bytes_checkpoint(run_dir: Path, seed: int = 0, block_size: int = 128, **shape: int | float | bool) -> Path:
    """Save a tiny random GPT for the `bytes` tokenizer (chat tokens included) as the trainer saves it, in
    `run_dir/checkpoints`; returns `run_dir`. Its weights are scaled up so that samples vary. `shape`: GPTConfig
    fields other than the tiny preset's (e.g. n_layer=2, or a vocab_size too small for the chat tokens)."""
    tokenizer = load_tokenizer("bytes")
    generator = torch.Generator().manual_seed(seed)
    # padded past the tokenizer's ids, as the trainer pads
    config = GPTConfig.from_preset("tiny", **{"vocab_size": 320, "block_size": block_size, "tie_embeddings": False,
                                              **shape})
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    optimizer = adamw(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    meta = {"model": config.to_dict(),
            "tokenizer": {"spec": "bytes", "name": tokenizer.name, "vocab_size": tokenizer.vocab_size}}
    save_checkpoint(Path(run_dir) / "checkpoints", 1, model, optimizer, meta)
    return Path(run_dir)
