"""Pretraining under torchrun: `torchrun --standalone --nproc-per-node N -m fineforge.model.pretrain --config FILE`.

DDP (gloo on CPU, NCCL on GPU); a target number of tokens per optimizer step reached by gradient
accumulation; AdamW with warmup then cosine or linear decay; gradient clipping; bf16 autocast on GPU;
optional torch.compile. Every N steps: validation loss, sampled continuations of fixed prompts, a
checkpoint. A restarted run resumes from its newest checkpoint exactly (weights, optimizer, data
position, RNG states). Everything that can be checked is checked before the first step.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import statistics
import sys
import time
import types
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fineforge.model.checkpoint import (
    CHECKPOINTS_SUBDIR,
    check_model_config,
    latest_checkpoint,
    load_training_state,
    read_meta,
    save_checkpoint,
)
from fineforge.model.data import DataPosition, TokenLoader, split_shards
from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.tokenizer import load_tokenizer
from fineforge.model.tracking import Tracker

log = logging.getLogger("fineforge.model.pretrain")

# Dense bf16 peak FLOP/s of one accelerator, by a substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
SUMMARY_FILE = "summary.json"
DECAYS = ("cosine", "linear", "constant")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ConfigError(ValueError):
    """A pretraining config that cannot run; the message names the field."""


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs. Defaults are nanoGPT's CPU Shakespeare recipe."""

    data_dir: str  # token shards with manifest.json (train_* and val_* splits)
    run_dir: str  # checkpoints, metrics.jsonl, samples, summary.json
    model: str = "tiny"  # a GPTConfig preset
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"n_layer": 2, "dropout": 0.1}
    tokenizer: str | None = None  # default: the manifest's tokenizer
    tokenizer_dir: str | None = None  # vocabulary files of a published encoding
    vocab_multiple: int = 64  # the model's vocabulary is the tokenizer's, padded to a multiple of this
    micro_batch_size: int = 12  # sequences per rank per forward pass
    tokens_per_step: int | None = None  # per optimizer step over all ranks; default one micro-batch per rank
    max_steps: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    decay: str = "cosine"
    decay_steps: int | None = None  # default max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_every: int = 250  # 0: only at the end
    eval_batches: int = 20
    sample_every: int = 250  # 0: only at the end
    sample_prompts: list[str] = field(default_factory=lambda: ["The ", "Once upon a time", "\n"])
    sample_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = 50
    checkpoint_every: int = 500  # 0: only the final checkpoint
    keep_checkpoints: int = 2
    log_every: int = 1
    seed: int = 1337
    shuffle: bool = True  # each batch from random places of the shard, a new order every epoch (else in order)
    device: str = "auto"  # auto, cpu, cuda
    dtype: str = "auto"  # auto (bfloat16 on CUDA, float32 otherwise), float32, bfloat16
    compile: bool = False
    peak_flops: float | None = None  # per device, for MFU; default from PEAK_BF16_FLOPS
    experiment: str = "pretrain"  # MLflow experiment when no run is given
    use_mlflow: bool = True
    verify_shards: bool = True  # check every shard's sha256 against the manifest before training
    resume: bool = True  # continue from the newest checkpoint in run_dir


def _matches(value: Any, annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(annotation))
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_matches(v, get_args(annotation)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if isinstance(value, bool):
        return annotation is bool
    if annotation is float:
        return isinstance(value, int | float)
    return isinstance(value, annotation)


def _require(ok: bool, name: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"pretrain config field {name!r}: {message}, got {value!r}")


def validate_config(config: PretrainConfig) -> GPTConfig:
    """Check types and ranges of every field; return the model's shape (before vocabulary sizing)."""
    hints = get_type_hints(PretrainConfig)
    for f in fields(config):
        value = getattr(config, f.name)
        _require(_matches(value, hints[f.name]), f.name, f"expected {hints[f.name]}", value)
    c = config
    for name in ("micro_batch_size", "max_steps", "eval_batches", "sample_tokens", "log_every", "vocab_multiple"):
        _require(getattr(c, name) > 0, name, "must be > 0", getattr(c, name))
    for name in ("warmup_steps", "eval_every", "sample_every", "checkpoint_every", "weight_decay", "grad_clip"):
        _require(getattr(c, name) >= 0, name, "must be >= 0", getattr(c, name))
    _require(c.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1", c.keep_checkpoints)
    _require(c.lr > 0, "lr", "must be > 0", c.lr)
    _require(0 <= c.min_lr <= c.lr, "min_lr", f"must be in [0, lr={c.lr}]", c.min_lr)
    _require(c.decay in DECAYS, "decay", f"must be one of {DECAYS}", c.decay)
    _require(c.decay_steps is None or c.decay_steps > 0, "decay_steps", "must be > 0", c.decay_steps)
    _require(c.tokens_per_step is None or c.tokens_per_step > 0, "tokens_per_step", "must be > 0", c.tokens_per_step)
    _require(0 < c.beta1 < 1, "beta1", "must be in (0, 1)", c.beta1)
    _require(0 < c.beta2 < 1, "beta2", "must be in (0, 1)", c.beta2)
    _require(c.temperature > 0, "temperature", "must be > 0", c.temperature)
    _require(c.top_k is None or c.top_k > 0, "top_k", "must be > 0", c.top_k)
    _require(c.peak_flops is None or c.peak_flops > 0, "peak_flops", "must be > 0", c.peak_flops)
    _require(c.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda", c.device)
    _require(c.dtype == "auto" or c.dtype in DTYPES, "dtype", f"must be auto or one of {list(DTYPES)}", c.dtype)
    try:
        return GPTConfig.from_preset(c.model, **c.model_overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pretrain config fields 'model'/'model_overrides': {exc}") from exc


def load_config(path: str | Path) -> PretrainConfig:
    """Read and validate a JSON config file; unknown or missing fields are errors naming them."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read pretrain config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"pretrain config {path}: expected a JSON object")
    known = {f.name for f in fields(PretrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"pretrain config {path}: unknown fields {unknown}")
    missing = sorted(f.name for f in fields(PretrainConfig) if f.name in ("data_dir", "run_dir") and f.name not in raw)
    if missing:
        raise ConfigError(f"pretrain config {path}: missing required fields {missing}")
    config = PretrainConfig(**raw)
    validate_config(config)
    return config


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


def learning_rate(step: int, config: PretrainConfig) -> float:
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


def peak_flops(config: PretrainConfig, device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device when known (bf16 on a listed GPU, or given in the config)."""
    if config.peak_flops is not None:
        return config.peak_flops
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


@dataclass
class Plan:
    """What a run will do, settled before the first step."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype
    model_config: GPTConfig
    grad_accum: int
    train_shards: list[Path]
    val_shards: list[Path]
    tokenizer_spec: str
    resume_from: Path | None


def plan_run(config: PretrainConfig) -> Plan:
    """Validate config, shards, tokenizer, batch arithmetic and any checkpoint to resume; no training yet."""
    model_config = validate_config(config)
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("pretrain config field 'device': cuda requested but no CUDA device is available")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    dtype = DTYPES[config.dtype] if config.dtype != "auto" else (torch.bfloat16 if use_cuda else torch.float32)

    # sha256 of every shard once per node; every rank checks headers and sizes
    train_shards, manifest = split_shards(config.data_dir, "train", verify=config.verify_shards and local_rank == 0)
    val_shards, _ = split_shards(config.data_dir, "val", verify=False)
    spec = config.tokenizer or manifest.get("tokenizer")
    if config.tokenizer is None and manifest.get("tokenizer_file"):  # a trained BPE copied next to the shards
        spec = str(Path(config.data_dir) / manifest["tokenizer_file"])
    if not isinstance(spec, str):
        raise ConfigError(f"{config.data_dir}: the manifest names no tokenizer; set the config field 'tokenizer'")
    tokenizer = load_tokenizer(spec, config.tokenizer_dir)
    data_vocab = int(manifest.get("vocab_size", tokenizer.vocab_size))
    if data_vocab > tokenizer.vocab_size:
        raise ConfigError(f"shards of vocabulary {data_vocab} do not fit tokenizer {spec} ({tokenizer.vocab_size})")
    if "vocab_size" not in config.model_overrides:
        padded = -(-tokenizer.vocab_size // config.vocab_multiple) * config.vocab_multiple
        model_config = GPTConfig.from_dict({**model_config.to_dict(), "vocab_size": padded})
    elif model_config.vocab_size < tokenizer.vocab_size:
        raise ConfigError(
            f"pretrain config field 'model_overrides': vocab_size {model_config.vocab_size} is smaller than "
            f"tokenizer {spec}'s {tokenizer.vocab_size}"
        )
    seq_len = model_config.block_size
    grad_accum = gradient_accumulation(config, seq_len, world_size)
    for shards in (train_shards, val_shards):  # each split must hold at least one window
        TokenLoader(shards, config.micro_batch_size, seq_len, rank, world_size)

    resume_from = latest_checkpoint(Path(config.run_dir) / CHECKPOINTS_SUBDIR) if config.resume else None
    if resume_from is not None:
        check_model_config(resume_from, read_meta(resume_from), model_config)
    return Plan(rank, local_rank, world_size, device, dtype, model_config, grad_accum, train_shards, val_shards,
                spec, resume_from)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class Trainer:
    """One process of a (possibly distributed) pretraining run."""

    def __init__(self, config: PretrainConfig, plan: Plan) -> None:
        self.config, self.plan = config, plan
        self.run_dir = Path(config.run_dir)
        self.ddp = plan.world_size > 1
        if self.ddp:
            if plan.device.type == "cuda":
                torch.cuda.set_device(plan.device)
            dist.init_process_group(backend="nccl" if plan.device.type == "cuda" else "gloo")
        if plan.device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        _seed_everything(config.seed)  # identical initial weights on every rank
        self.model = GPT(plan.model_config).to(plan.device)
        _seed_everything(config.seed + plan.rank)  # distinct dropout masks per rank
        self.optimizer = self.model.configure_optimizer(
            config.weight_decay, config.lr, (config.beta1, config.beta2), plan.device.type
        )
        seq_len = plan.model_config.block_size
        self.train_loader = TokenLoader(plan.train_shards, config.micro_batch_size, seq_len, plan.rank, plan.world_size,
                                        shuffle=config.shuffle, seed=config.seed)
        self.val_loader = TokenLoader(plan.val_shards, config.micro_batch_size, seq_len, plan.rank, plan.world_size)
        self.tokenizer = load_tokenizer(plan.tokenizer_spec, config.tokenizer_dir)
        self.step = 0
        if plan.resume_from is not None:
            meta = load_training_state(plan.resume_from, self.model, self.optimizer, plan.rank)
            self.step = int(meta["step"])
            self.train_loader.restore(DataPosition.from_dict(meta["data_position"]))
            log.info("resumed from %s at step %d", plan.resume_from, self.step)
        self.forward_model: torch.nn.Module = torch.compile(self.model) if config.compile else self.model
        if self.ddp:
            device_ids = [plan.device.index] if plan.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.forward_model, device_ids=device_ids)
        self.autocast = (
            torch.autocast(plan.device.type, dtype=plan.dtype) if plan.dtype != torch.float32 else nullcontext()
        )
        self.tokens_per_step = config.micro_batch_size * seq_len * plan.world_size * plan.grad_accum
        self.flops_per_token = self.model.flops_per_token()
        self.peak_flops = peak_flops(config, plan.device, plan.dtype)
        self.tracker = Tracker(self.run_dir, config.experiment, enabled=plan.rank == 0, use_mlflow=config.use_mlflow)

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.ddp:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value = value / self.plan.world_size
        return value.item()

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches; returns its metrics."""
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.forward_model.train()
        loss_sum = torch.zeros((), device=self.plan.device)
        for micro in range(self.plan.grad_accum):
            x, y = self.train_loader.next_batch()
            x, y = x.to(self.plan.device, non_blocking=True), y.to(self.plan.device, non_blocking=True)
            last = micro == self.plan.grad_accum - 1
            sync = nullcontext() if (last or not self.ddp) else self.forward_model.no_sync()
            with sync:
                with self.autocast:
                    _, loss = self.forward_model(x, y)
                (loss / self.plan.grad_accum).backward()
            loss_sum += loss.detach()
        grad_norm = None
        if self.config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip).item()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"train_loss": self._mean_over_ranks(loss_sum / self.plan.grad_accum), "lr": lr, "grad_norm": grad_norm}

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the first `eval_batches` windows of the validation split."""
        self.forward_model.eval()
        self.val_loader.restore(DataPosition())
        total = torch.zeros((), device=self.plan.device)
        for _ in range(self.config.eval_batches):
            x, y = self.val_loader.next_batch()
            with self.autocast:
                _, loss = self.forward_model(x.to(self.plan.device), y.to(self.plan.device))
            total += loss.float()
        return self._mean_over_ranks(total / self.config.eval_batches)

    def sample(self) -> str:
        """Continuations of the fixed prompts (rank 0), reproducible for a given step."""
        engine = Engine(self.model, vocab_size=self.tokenizer.vocab_size)
        sampling = SamplingConfig(
            max_new_tokens=self.config.sample_tokens,
            temperature=self.config.temperature,
            top_k=self.config.top_k,
            seed=self.config.seed + self.step,
            stop_tokens=(self.tokenizer.eot_id,),
        )
        parts = []
        with self.autocast:
            for prompt in self.config.sample_prompts:
                tokens = engine.generate(self.tokenizer.encode(prompt) or [self.tokenizer.eot_id], sampling)[0].tokens
                parts.append(f"--- prompt: {prompt!r}\n{prompt}{self.tokenizer.decode(tokens)}\n")
        self.model.train()
        return "".join(parts)

    def checkpoint(self) -> Path:
        meta = {
            "model": self.plan.model_config.to_dict(),
            "train_config": asdict(self.config),
            "tokenizer": {"spec": self.plan.tokenizer_spec, "name": self.tokenizer.name,
                          "vocab_size": self.tokenizer.vocab_size},
            "data_position": self.train_loader.position.to_dict(),
            "world_size": self.plan.world_size,
        }
        return save_checkpoint(
            self.run_dir / CHECKPOINTS_SUBDIR, self.step, self.model, self.optimizer, meta,
            rank=self.plan.rank, keep=self.config.keep_checkpoints,
        )

    def _due(self, every: int) -> bool:
        return self.step == self.config.max_steps or (every > 0 and self.step % every == 0)

    def run(self) -> dict:
        """Train to max_steps; return the summary (also written to run_dir/summary.json on rank 0)."""
        c, tracker = self.config, self.tracker
        if self.plan.rank == 0:
            log.info(
                "model %s: %s parameters, %s FLOPs/token; %d ranks x %d micro-steps x %d x %d = %d tokens/step",
                c.model, f"{self.model.num_parameters():,}", f"{self.flops_per_token:,}", self.plan.world_size,
                self.plan.grad_accum, c.micro_batch_size, self.plan.model_config.block_size, self.tokens_per_step,
            )
        params = {**asdict(c), **{f"model.{k}": v for k, v in self.plan.model_config.to_dict().items()}}
        tracker.params({**params, "world_size": self.plan.world_size, "grad_accum": self.plan.grad_accum,
                        "num_parameters": self.model.num_parameters()})
        tracker.event("start", step=self.step, resumed=self.plan.resume_from is not None,
                      world_size=self.plan.world_size)
        done = self.run_dir / SUMMARY_FILE
        if self.step >= c.max_steps and done.is_file():
            log.info("run already complete at step %d: %s", self.step, done)
            return json.loads(done.read_text())
        speeds, mfus, val_loss, last, final_checkpoint = [], [], None, {}, None
        while self.step < c.max_steps:
            t0 = time.perf_counter()
            metrics = self.train_step()
            if self.plan.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            tokens_per_s = self.tokens_per_step / dt
            mfu = (
                self.flops_per_token * tokens_per_s / (self.peak_flops * self.plan.world_size)
                if self.peak_flops else None
            )
            speeds.append(tokens_per_s)
            if mfu is not None:
                mfus.append(mfu)
            last = {**metrics, "tokens_per_s": tokens_per_s, "mfu": mfu, "step_seconds": dt}
            tracker.metrics(self.step, **last)
            if self.plan.rank == 0 and (self.step % c.log_every == 0 or self.step == c.max_steps):
                log.info(
                    "step %d/%d | loss %.4f | lr %.2e | %.0f tok/s%s", self.step, c.max_steps, metrics["train_loss"],
                    metrics["lr"], tokens_per_s, f" | MFU {100 * mfu:.1f}%" if mfu is not None else "",
                )
            if self._due(c.eval_every):
                val_loss = self.evaluate()
                tracker.metrics(self.step, val_loss=val_loss)
                if self.plan.rank == 0:
                    log.info("step %d | val loss %.4f", self.step, val_loss)
            if self.plan.rank == 0 and self._due(c.sample_every):
                text = self.sample()
                tracker.text(text, f"samples/step_{self.step:08d}.txt")
                log.info("samples at step %d:\n%s", self.step, text)
            if self._due(c.checkpoint_every):
                final_checkpoint = self.checkpoint()
        if val_loss is None:  # killed between the final checkpoint and the summary
            val_loss = self.evaluate()
        summary = {
            "step": self.step,
            "train_loss": last.get("train_loss"),
            "val_loss": val_loss,
            # the first step pays for compilation and warm-up
            "tokens_per_s": statistics.median(speeds[1:] or speeds) if speeds else None,
            "mfu": statistics.median(mfus[1:] or mfus) if mfus else None,
            "tokens_per_step": self.tokens_per_step,
            "num_parameters": self.model.num_parameters(),
            "checkpoint": str(final_checkpoint) if final_checkpoint else None,
        }
        if self.plan.rank == 0:
            tracker.event("end", **summary)
            (self.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
            if final_checkpoint is not None:
                tracker.artifacts(final_checkpoint, "checkpoint")
        return summary

    def close(self, status: str = "FINISHED") -> None:
        self.tracker.close(status)
        if self.ddp:
            dist.destroy_process_group()


def train(config: PretrainConfig) -> dict:
    """Plan (all checks), then train; returns the run summary."""
    plan = plan_run(config)
    trainer = Trainer(config, plan)
    try:
        summary = trainer.run()
    except BaseException:
        trainer.close("FAILED")
        raise
    trainer.close()
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain a GPT (run under torchrun)")
    parser.add_argument("--config", required=True, help="JSON file of PretrainConfig fields")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    train(load_config(args.config))


if __name__ == "__main__":
    main()
