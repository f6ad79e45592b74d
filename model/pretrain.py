"""Pretraining, a stage of the shared trainer: next-token prediction on token shards.

    torchrun --standalone --nproc-per-node N -m fineforge.model.pretrain --config FILE

This module holds only what is particular to pretraining: its config (defaults: nanoGPT's CPU
Shakespeare recipe), the checks of shards, tokenizer and batch arithmetic, the GPT, the batches, the loss,
the validation loss and the sampled continuations. Everything else is `model/trainer.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fineforge.model.config import ConfigError, require
from fineforge.model.data import DataPosition, TokenLoader, split_shards
from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.shards import ShardError, tokenizer_spec
from fineforge.model.tokenizer import Tokenizer, TokenizerError, load_tokenizer
from fineforge.model.trainer import BatchLoss, Stage, StagePlan, TrainerConfig, World, main


@dataclass(kw_only=True)
class PretrainConfig(TrainerConfig):
    """A pretraining run: the trainer's fields plus data, model, batch and sampling."""

    data_dir: str  # token shards with manifest.json (train_* and val_* splits)
    model: str = "tiny"  # a GPTConfig preset
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"n_layer": 2, "dropout": 0.1}
    tokenizer: str | None = None  # default: the tokenizer that wrote the shards
    tokenizer_dir: str | None = None  # vocabulary files of a published encoding
    vocab_multiple: int = 64  # the model's vocabulary is the tokenizer's, padded to a multiple of this
    micro_batch_size: int = 12  # sequences per rank per forward pass
    tokens_per_step: int | None = None  # per optimizer step over all ranks; default one micro-batch per rank
    eval_batches: int = 20
    sample_prompts: list[str] = field(default_factory=lambda: ["The ", "Once upon a time", "\n"])
    sample_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = 50
    shuffle: bool = True  # each batch from random places of the shard, a new order every epoch (else in order)
    verify_shards: bool = True  # check every shard's sha256 against the manifest before training
    experiment: str = "pretrain"

    def check_ranges(self) -> None:
        super().check_ranges()
        for name in ("micro_batch_size", "eval_batches", "sample_tokens", "vocab_multiple"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.tokens_per_step is None or self.tokens_per_step > 0, self, "tokens_per_step", "must be > 0")
        require(self.temperature > 0, self, "temperature", "must be > 0")
        require(self.top_k is None or self.top_k > 0, self, "top_k", "must be > 0")
        self.model_shape()

    def model_shape(self) -> GPTConfig:
        """The preset with its overrides (the vocabulary is sized to the tokenizer later)."""
        try:
            return GPTConfig.from_preset(self.model, **self.model_overrides)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pretrain config fields 'model'/'model_overrides': {exc}") from exc


def gradient_accumulation(config: PretrainConfig, seq_len: int, world_size: int) -> int:
    """Micro-steps per optimizer step so that the world processes exactly `tokens_per_step` tokens."""
    per_micro = config.micro_batch_size * seq_len * world_size
    if config.tokens_per_step is None:
        return 1
    if config.tokens_per_step % per_micro:
        raise ConfigError(
            f"pretrain config field 'tokens_per_step': {config.tokens_per_step} is not a multiple of "
            f"micro_batch_size x seq_len x world_size = {config.micro_batch_size} x {seq_len} x {world_size} "
            f"= {per_micro}"
        )
    return config.tokens_per_step // per_micro


def sized_to_tokenizer(config: PretrainConfig, shape: GPTConfig, tokenizer: Tokenizer) -> GPTConfig:
    """The model's shape with the tokenizer's vocabulary, padded to `vocab_multiple` unless set explicitly."""
    if "vocab_size" in config.model_overrides:
        if shape.vocab_size < tokenizer.vocab_size:
            raise ConfigError(f"pretrain config field 'model_overrides': vocab_size {shape.vocab_size} is smaller "
                              f"than tokenizer {tokenizer.name}'s {tokenizer.vocab_size}")
        return shape
    padded = -(-tokenizer.vocab_size // config.vocab_multiple) * config.vocab_multiple
    return GPTConfig.from_dict({**shape.to_dict(), "vocab_size": padded})


class PretrainStage(Stage):
    """Next-token prediction on the train split; validation loss on the first windows of the val split."""

    name = "pretrain"
    config: PretrainConfig

    def plan(self, world_size: int, verify_data: bool) -> StagePlan:
        c = self.config
        self.train_shards, manifest = split_shards(c.data_dir, "train", verify=c.verify_shards and verify_data)
        self.val_shards, _ = split_shards(c.data_dir, "val", verify=False)
        self.tokenizer_spec = c.tokenizer or tokenizer_spec(c.data_dir, manifest)
        try:
            self.tokenizer = load_tokenizer(self.tokenizer_spec, c.tokenizer_dir)
        except TokenizerError as exc:
            raise ConfigError(f"pretrain config fields 'tokenizer'/'tokenizer_dir': {exc}") from exc
        if manifest["vocab_size"] > self.tokenizer.vocab_size:
            raise ConfigError(f"shards of vocabulary {manifest['vocab_size']} do not fit tokenizer "
                              f"{self.tokenizer_spec} ({self.tokenizer.vocab_size})")
        self.model_config = sized_to_tokenizer(c, c.model_shape(), self.tokenizer)
        seq_len = self.model_config.block_size
        micro_steps = gradient_accumulation(c, seq_len, world_size)
        for split, shards in (("train", self.train_shards), ("val", self.val_shards)):
            try:  # each split must hold at least one micro-step of windows
                TokenLoader(shards, c.micro_batch_size, seq_len, 0, world_size)
            except ShardError as exc:
                raise ShardError(f"{c.data_dir}, {split} split: {exc} (use a smaller micro_batch_size or "
                                 "block_size, or more data)") from exc
        tokenizer = {"spec": self.tokenizer_spec, "name": self.tokenizer.name,
                     "vocab_size": self.tokenizer.vocab_size}
        return StagePlan(micro_steps, self.model_config.to_dict(), {"tokenizer": tokenizer})

    def build_model(self) -> nn.Module:
        return GPT(self.model_config)

    def start(self, world: World) -> None:
        c, seq_len = self.config, self.model_config.block_size
        self.device = world.device
        self.train_loader = TokenLoader(self.train_shards, c.micro_batch_size, seq_len, world.rank, world.world_size,
                                        shuffle=c.shuffle, seed=c.seed)
        self.val_loader = TokenLoader(self.val_shards, c.micro_batch_size, seq_len, world.rank, world.world_size)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.train_loader.next_batch()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> BatchLoss:
        x, y = batch
        _, loss = model(x, y)
        return BatchLoss(loss, x.numel())

    def evaluate(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Mean loss over the first `eval_batches` windows of the validation split."""
        self.val_loader.restore(DataPosition())
        total = torch.zeros((), device=self.device)
        for _ in range(self.config.eval_batches):
            x, y = self.val_loader.next_batch()
            _, loss = model(x.to(self.device), y.to(self.device))
            total += loss.float()
        return {"val_loss": total / self.config.eval_batches}

    def samples(self, model: nn.Module, step: int) -> str:
        """Continuations of the fixed prompts, reproducible for a given step."""
        c, tokenizer = self.config, self.tokenizer
        engine = Engine(model, vocab_size=tokenizer.vocab_size)
        sampling = SamplingConfig(max_new_tokens=c.sample_tokens, temperature=c.temperature, top_k=c.top_k,
                                  seed=c.seed + step, stop_tokens=(tokenizer.eot_id,))
        parts = []
        for prompt in c.sample_prompts:
            tokens = engine.generate(tokenizer.encode(prompt) or [tokenizer.eot_id], sampling)[0].tokens
            parts.append(f"--- prompt: {prompt!r}\n{prompt}{tokenizer.decode(tokens)}\n")
        return "".join(parts)

    def data_position(self) -> dict:
        return self.train_loader.position.to_dict()

    def restore_data_position(self, position: dict) -> None:
        self.train_loader.restore(DataPosition.from_dict(position))


if __name__ == "__main__":
    main(PretrainStage, PretrainConfig)
