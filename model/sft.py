"""Supervised fine-tuning (SFT), a stage of the shared trainer: next-token prediction on conversations, with
the loss on the assistant's tokens only.

    torchrun --standalone --nproc-per-node N -m fineforge.model.sft --config FILE

SFT starts from a pretrained (or SFT) checkpoint, whose shape and weights the model takes. Before launch:
the conversation shards were written by the checkpoint's tokenizer, the model's embedding covers that
tokenizer and its chat tokens, and every conversation fits the model's context. Batches pad, they do not
pack (`model/conversation_data.py` says why): one conversation per row from its first token, a row as wide
as the step's longest conversation. Evaluation: the loss on the trainable tokens of held-out conversations.
Samples: replies to fixed user prompts, ending at `<|im_end|>`. The checkpoints carry `stage: "sft"`, the
tokenizer's record (with its fingerprint) and the conversation set's manifest digest; MLflow gets the set
as the run's input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fineforge.model.chat import USER, ChatFormatError, ChatTemplate, require_chat_tokens
from fineforge.model.checkpoint import CheckpointError, find_checkpoint, load_weights_into, model_config, read_meta
from fineforge.model.config import ConfigError, require, validate
from fineforge.model.conversation_data import IGNORE_TARGET, ConversationLoader
from fineforge.model.conversation_shards import ConversationShard, conversation_split
from fineforge.model.data import DataPosition
from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.shards import MANIFEST, ShardError, file_sha256, tokenizer_spec
from fineforge.model.tokenizer import (
    IM_END,
    Tokenizer,
    TokenizerError,
    load_tokenizer,
    tokenizer_fingerprint,
    tokenizer_record,
)
from fineforge.model.tracking import Tracker
from fineforge.model.trainer import BatchLoss, Stage, StagePlan, TrainerConfig, World, main

STAGE = "sft"
# Checkpoints SFT may start from: a language model (a testkit or converted checkpoint may name no stage).
INIT_STAGES = (None, "pretrain", "sft", "rl", "rlhf")


@dataclass(kw_only=True)
class SFTConfig(TrainerConfig):
    """An SFT run: the trainer's fields plus the conversations, the checkpoint to start from, batch and samples."""

    data_dir: str  # a conversation shard set (`fineforge conversations build`)
    init_checkpoint: str  # a checkpoint folder, a folder of them, or a run folder (its newest checkpoint)
    tokenizer_dir: str | None = None  # vocabulary files of a published encoding
    dropout: float | None = None  # default: the checkpoint's
    micro_batch_size: int = 8  # conversations per rank per forward pass
    conversations_per_step: int | None = None  # per optimizer step over all ranks; default one micro-batch per rank
    row_multiple: int = 64  # a batch's width is its longest conversation rounded up to this (at most the context)
    group_steps: int = 16  # shuffled epochs sort each this many micro-steps' conversations by length
    eval_batches: int = 20  # micro-steps of held-out conversations per evaluation (at most the val split's)
    sample_prompts: list[str] = field(default_factory=lambda: ["Who are you?", "What is 7 + 5?",
                                                               "Write a short poem about the sea."])
    sample_tokens: int = 128
    temperature: float = 0.7
    top_k: int | None = 50
    shuffle: bool = True
    verify_shards: bool = True  # check every file's sha256 against the manifest before training
    max_steps: int = 1000
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 20
    experiment: str = "sft"

    def check_ranges(self) -> None:
        super().check_ranges()
        for name in ("micro_batch_size", "row_multiple", "group_steps", "eval_batches", "sample_tokens"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.conversations_per_step is None or self.conversations_per_step > 0, self,
                "conversations_per_step", "must be > 0")
        require(self.dropout is None or 0 <= self.dropout < 1, self, "dropout", "must be in [0, 1)")
        require(self.temperature > 0, self, "temperature", "must be > 0")
        require(self.top_k is None or self.top_k > 0, self, "top_k", "must be > 0")
        run_dir, init = Path(self.run_dir).resolve(), Path(self.init_checkpoint).resolve()
        require(init != run_dir and run_dir not in init.parents, self, "init_checkpoint",
                "must lie outside run_dir (the run's own checkpoints are its resume points)")


def gradient_accumulation(config: SFTConfig, world_size: int) -> int:
    """Micro-steps per optimizer step so that the world processes exactly `conversations_per_step` conversations."""
    per_micro = config.micro_batch_size * world_size
    if config.conversations_per_step is None:
        return 1
    if config.conversations_per_step % per_micro:
        raise ConfigError(
            f"sft config field 'conversations_per_step': {config.conversations_per_step} is not a multiple of "
            f"micro_batch_size x world_size = {config.micro_batch_size} x {world_size} = {per_micro}"
        )
    return config.conversations_per_step // per_micro


def init_checkpoint(config: SFTConfig) -> tuple[Path, dict, GPTConfig]:
    """The checkpoint SFT starts from, its metadata and its model shape (with the configured dropout)."""
    try:
        path = find_checkpoint(config.init_checkpoint)
        meta = read_meta(path)
        shape = model_config(path, meta)
    except CheckpointError as exc:
        raise ConfigError(f"sft config field 'init_checkpoint': {exc}") from exc
    if meta.get("stage") not in INIT_STAGES:
        raise ConfigError(f"sft config field 'init_checkpoint': {path} is a {meta['stage']!r} checkpoint, not a "
                          "language model (start from a pretrain or SFT checkpoint)")
    if config.dropout is not None:
        shape = GPTConfig.from_dict({**shape.to_dict(), "dropout": config.dropout})
    return path, meta, shape


def checkpoint_fingerprint(path: Path, meta: dict, tokenizer_dir: str | None) -> str:
    """The fingerprint of a checkpoint's tokenizer: recorded (SFT checkpoints), else from loading its spec."""
    record = meta.get("tokenizer") or {}
    if record.get("fingerprint"):
        return record["fingerprint"]
    if not record.get("spec"):
        raise ConfigError(f"sft config field 'init_checkpoint': {path} names no tokenizer in its metadata")
    try:
        return tokenizer_fingerprint(load_tokenizer(record["spec"], tokenizer_dir))
    except TokenizerError as exc:
        raise ConfigError(f"sft config fields 'init_checkpoint'/'tokenizer_dir': cannot load the checkpoint's "
                          f"tokenizer {record['spec']!r}: {exc}") from exc


def require_model_fits_tokenizer(path: Path, meta: dict, shape: GPTConfig, tokenizer: Tokenizer,
                                 tokenizer_dir: str | None) -> None:
    """Refuse, naming the fix, a checkpoint of another tokenizer or whose embedding misses some of its ids."""
    if checkpoint_fingerprint(path, meta, tokenizer_dir) != tokenizer_fingerprint(tokenizer):
        recorded = meta.get("tokenizer") or {}
        raise ConfigError(
            f"sft config fields 'init_checkpoint'/'data_dir': {path} was trained with tokenizer "
            f"{recorded.get('name')!r} ({recorded.get('vocab_size')} ids), the conversations with {tokenizer.name!r} "
            f"({tokenizer.vocab_size} ids): build the conversations with the checkpoint's tokenizer"
        )
    try:
        require_chat_tokens(tokenizer, shape.vocab_size)
    except ChatFormatError as exc:
        raise ConfigError(f"sft config field 'init_checkpoint': {path}: {exc}") from exc
    if shape.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"sft config field 'init_checkpoint': {path} embeds {shape.vocab_size} ids, tokenizer "
                          f"{tokenizer.name} has {tokenizer.vocab_size}: pretrain with the vocabulary padded to cover "
                          "the whole tokenizer")


def require_context_fits(config: SFTConfig, context: int, world_size: int, splits: dict) -> None:
    """Each split holds a micro-step of conversations, each of them within the model's context."""
    for split, shards in splits.items():
        try:
            ConversationLoader(shards, config.micro_batch_size, context, 0, world_size)
        except ShardError as exc:
            raise ShardError(f"{config.data_dir}, {split} split: {exc}") from exc


def check_before_build(config: SFTConfig, tokenizer: Tokenizer, context_length: int) -> None:
    """The checks that need no conversation shards, for conversations still to be built with `tokenizer` and
    at most `context_length` tokens each: the config, the checkpoint, its tokenizer and context."""
    validate(config)
    path, meta, shape = init_checkpoint(config)
    require_model_fits_tokenizer(path, meta, shape, tokenizer, config.tokenizer_dir)
    if context_length - 1 > shape.block_size:
        raise ConfigError(f"conversations config field 'context_length': {context_length} tokens do not fit the "
                          f"context of {path} ({shape.block_size} + 1): use at most {shape.block_size + 1}")


class SFTStage(Stage):
    """Masked next-token loss on conversations, starting from a checkpoint's weights."""

    name = STAGE
    config: SFTConfig

    def plan(self, world_size: int, verify_data: bool) -> StagePlan:
        c = self.config
        self.init_path, init_meta, self.model_config = init_checkpoint(c)
        verify = c.verify_shards and verify_data
        self.train_shards, manifest = conversation_split(c.data_dir, "train", verify)
        self.val_shards, _ = conversation_split(c.data_dir, "val", verify)
        spec = tokenizer_spec(Path(c.data_dir).resolve(), manifest)
        try:
            self.tokenizer = load_tokenizer(spec, c.tokenizer_dir)
        except TokenizerError as exc:
            raise ConfigError(f"sft config field 'tokenizer_dir': the conversations' tokenizer: {exc}") from exc
        require_model_fits_tokenizer(self.init_path, init_meta, self.model_config, self.tokenizer, c.tokenizer_dir)
        context = self.model_config.block_size
        require_context_fits(c, context, world_size, {"train": self.train_shards, "val": self.val_shards})
        self.pad_id = int(manifest["pad_id"])
        self.manifest_digest = file_sha256(Path(c.data_dir) / MANIFEST)
        self.data_profile = {key: manifest[key] for key in ("documents", "tokens", "trainable_tokens", "sources")}
        self.eval_steps = min(c.eval_batches, conversations(self.val_shards) // (c.micro_batch_size * world_size))
        meta = {
            "tokenizer": tokenizer_record(spec, self.tokenizer),
            "init_checkpoint": {"path": str(self.init_path.resolve()), "step": init_meta["step"],
                                "stage": init_meta.get("stage")},
            "data": {"dir": str(Path(c.data_dir).resolve()), "manifest_sha256": self.manifest_digest},
        }  # fmt: skip
        return StagePlan(gradient_accumulation(c, world_size), self.model_config.to_dict(), meta)

    def build_model(self) -> nn.Module:
        model = GPT(self.model_config)
        load_weights_into(model, self.init_path, read_meta(self.init_path))
        return model

    def _loader(self, shards: list[ConversationShard], world: World, shuffle: bool) -> ConversationLoader:
        c = self.config
        return ConversationLoader(shards, c.micro_batch_size, self.model_config.block_size, self.pad_id, world.rank,
                                  world.world_size, shuffle=shuffle, seed=c.seed, group_steps=c.group_steps,
                                  row_multiple=c.row_multiple)

    def start(self, world: World) -> None:
        self.device = world.device
        self.train_loader = self._loader(self.train_shards, world, self.config.shuffle)
        self.val_loader = self._loader(self.val_shards, world, shuffle=False)
        self.template = ChatTemplate(self.tokenizer)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(t.to(self.device, non_blocking=True) for t in self.train_loader.next_batch())

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> BatchLoss:
        inputs, targets, loss_mask = batch
        _, loss = model(inputs, targets, loss_mask=loss_mask)
        return BatchLoss(loss, inputs.numel())  # positions computed, padding included (what tokens/s and MFU pay for)

    def evaluate(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The loss per trainable token of the first `eval_batches` micro-steps of held-out conversations."""
        self.val_loader.restore(DataPosition())
        loss_sum = torch.zeros((), device=self.device)
        weight_sum = torch.zeros((), device=self.device)
        for _ in range(self.eval_steps):
            inputs, targets, loss_mask = (t.to(self.device) for t in self.val_loader.next_batch())
            _, loss = model(inputs, targets, loss_mask=loss_mask)
            weight = (loss_mask * (targets != IGNORE_TARGET)).sum()
            loss_sum += loss.float() * weight
            weight_sum += weight
        return {"val_loss": loss_sum / weight_sum.clamp(min=1.0)}

    def samples(self, model: nn.Module, step: int) -> str:
        """Replies to the fixed user prompts, reproducible for a given step; a reply ends at `<|im_end|>`."""
        c, tokenizer = self.config, self.tokenizer
        engine = Engine(model, vocab_size=tokenizer.vocab_size)
        sampling = SamplingConfig(max_new_tokens=c.sample_tokens, temperature=c.temperature, top_k=c.top_k,
                                  seed=c.seed + step, stop_tokens=(tokenizer.encode_special(IM_END),))
        parts = []
        for prompt in c.sample_prompts:
            reply = engine.generate(self.template.render_prompt([{"role": USER, "content": prompt}]), sampling)[0]
            ending = IM_END if reply.stopped else f" [no {IM_END} within {c.sample_tokens} tokens]"
            parts.append(f"--- user: {prompt}\n{tokenizer.decode(reply.tokens)}{ending}\n")
        return "".join(parts)

    def track_inputs(self, tracker: Tracker) -> None:
        """The conversation set as the run's training input: digest of its manifest, counts as the profile."""
        data_dir = Path(self.config.data_dir)
        tracker.input_dataset(data_dir.name, self.manifest_digest, data_dir, self.data_profile, "training",
                              manifest=data_dir / MANIFEST)

    def data_position(self) -> dict:
        return self.train_loader.position.to_dict()

    def restore_data_position(self, position: dict) -> None:
        self.train_loader.restore(DataPosition.from_dict(position))


def conversations(shards: list[ConversationShard]) -> int:
    """How many conversations some shards hold."""
    return sum(int(s.index.size) for s in shards)


if __name__ == "__main__":
    main(SFTStage, SFTConfig)
