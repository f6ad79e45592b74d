"""The shared trainer: one training loop for every stage, which supplies only what differs (a `Stage`).

The trainer owns the process group (gloo on CPU, NCCL on GPU), device and dtype, seeding, AdamW and the
learning-rate schedule, gradient accumulation (DDP synchronises on the last micro-step only), clipping,
the eval / sample / checkpoint cadence, the metrics (loss, lr, grad norm, tokens/s, MFU), exact resume
(weights, optimizer, data position, RNG states), tracking (metrics.jsonl, MLflow) and the run summary.
A stage supplies its config (a `TrainerConfig` with its own fields), the checks before launch, the
model, the batches, the loss of a batch, the evaluation, the samples and its data position. Its torchrun
entry is `main(MyStage, MyConfig)`.

How the next stages plug in, each as thin as `pretrain`:
- SFT: the config adds the conversation shards and the pretrained checkpoint; `build_model` builds the GPT
  of the checkpoint's shape and loads its weights (`checkpoint.load_weights_into`); batches are windows of
  tokens, targets and the assistant-token mask; `loss` passes the mask to `GPT.forward(loss_mask=...)`;
  the data position is the loader's, as in pretraining.
- Reward model: `build_model` returns the GPT trunk of an SFT checkpoint with a scalar head (a module with
  `num_parameters()` and `flops_per_token()`); a batch holds (chosen, rejected) pairs; `loss` is
  -log sigmoid(r_chosen - r_rejected); `evaluate` returns the held-out pairwise accuracy and mean margin;
  the plan's `model` dict describes trunk and head, so a resume into another shape is refused.
- RL: `next_batch` refills a buffer of roll-outs when it is empty (the engine samples G completions per
  prompt with the current weights under `torch.no_grad()`; the verifier or reward model scores them; the
  stage keeps group-relative advantages and the sampling log-probabilities) and then hands out its
  micro-batches, so one batch of roll-outs feeds several optimizer steps; `loss` is the clipped
  policy-gradient objective (plus an optional KL term to a frozen reference the stage holds); the data
  position is the prompt cursor, and the stage's checks require `checkpoint_every` to be a multiple of
  the updates per roll-out batch, so that a checkpoint never falls inside a buffer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import time
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fineforge.model.checkpoint import (
    CHECKPOINTS_SUBDIR,
    CheckpointError,
    check_same_model,
    latest_checkpoint,
    load_training_state,
    read_meta,
    save_checkpoint,
)
from fineforge.model.config import ConfigError, load_config, require, validate
from fineforge.model.hardware import model_flops_utilisation, peak_flops
from fineforge.model.optim import DECAYS, adamw, learning_rate
from fineforge.model.shards import ShardError
from fineforge.model.tokenizer import TokenizerError
from fineforge.model.tracking import Tracker

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Errors that mean a job cannot start as configured: launching it again fails the same way.
STARTUP_ERRORS = (ConfigError, ShardError, CheckpointError, TokenizerError)
REFUSED_MARK = "fineforge training refused: "  # the line a worker prints before exiting with EXIT_REFUSED
EXIT_REFUSED = 2


@dataclass(kw_only=True)
class TrainerConfig:
    """What every stage's config holds: the run folder, optimizer and schedule, cadence, device, tracking."""

    run_dir: str  # checkpoints, metrics.jsonl, samples, summary.json
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
    sample_every: int = 250  # 0: only at the end
    checkpoint_every: int = 500  # 0: only the final checkpoint
    keep_checkpoints: int = 2
    log_every: int = 1
    seed: int = 1337
    device: str = "auto"  # auto, cpu, cuda
    dtype: str = "auto"  # auto (bfloat16 on CUDA, float32 otherwise), float32, bfloat16
    compile: bool = False
    peak_flops: float | None = None  # per device, for MFU; default from hardware.PEAK_BF16_FLOPS
    experiment: str = "train"  # MLflow experiment
    use_mlflow: bool = True
    resume: bool = True  # continue from the newest checkpoint in run_dir

    def check_ranges(self) -> None:
        """The ranges of the shared fields (a stage's config adds its own after calling this)."""
        for name in ("max_steps", "log_every", "keep_checkpoints"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        for name in ("warmup_steps", "eval_every", "sample_every", "checkpoint_every", "weight_decay", "grad_clip"):
            require(getattr(self, name) >= 0, self, name, "must be >= 0")
        require(self.lr > 0, self, "lr", "must be > 0")
        require(0 <= self.min_lr <= self.lr, self, "min_lr", f"must be in [0, lr={self.lr}]")
        require(self.decay in DECAYS, self, "decay", f"must be one of {DECAYS}")
        require(self.decay_steps is None or self.decay_steps > 0, self, "decay_steps", "must be > 0")
        require(0 < self.beta1 < 1, self, "beta1", "must be in (0, 1)")
        require(0 < self.beta2 < 1, self, "beta2", "must be in (0, 1)")
        require(self.peak_flops is None or self.peak_flops > 0, self, "peak_flops", "must be > 0")
        require(self.device in ("auto", "cpu", "cuda"), self, "device", "must be auto, cpu or cuda")
        require(self.dtype == "auto" or self.dtype in DTYPES, self, "dtype", f"must be auto or one of {list(DTYPES)}")


@dataclass
class World:
    """Where this process trains: its rank among `world_size` processes, its device and compute dtype."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def from_env(cls, config: TrainerConfig) -> World:
        """This process's place, from torchrun's environment (a single process without it)."""
        rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        require(not use_cuda or torch.cuda.is_available(), config, "device", "no CUDA device is available")
        device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        dtype = DTYPES[config.dtype] if config.dtype != "auto" else (torch.bfloat16 if use_cuda else torch.float32)
        return cls(rank, local_rank, int(os.environ.get("WORLD_SIZE", 1)), device, dtype)


@dataclass
class StagePlan:
    """What a stage settled before training."""

    micro_steps: int  # micro-batches per optimizer step (gradient accumulation)
    model: dict  # the model's shape as JSON: saved in checkpoints, compared when resuming
    meta: dict = field(default_factory=dict)  # more checkpoint metadata, e.g. the tokenizer's identity


@dataclass
class BatchLoss:
    """The loss of one micro-batch and the tokens its forward pass processed (for tokens/s and MFU)."""

    loss: torch.Tensor
    tokens: int


class Stage(ABC):
    """What one training stage supplies to the trainer (the module docstring shows SFT, reward model, RL)."""

    name: ClassVar[str]  # "pretrain": tags the MLflow run and the checkpoints

    def __init__(self, config: TrainerConfig) -> None:
        self.config = config

    @abstractmethod
    def plan(self, world_size: int, verify_data: bool) -> StagePlan:
        """Check what can be checked before training (data, tokenizer, batch arithmetic) for a world of
        `world_size` processes: cheap, no process group, nothing big allocated. `verify_data`: checksums too."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The model in float32 on the CPU, built after the trainer seeded every RNG alike on all ranks: fresh
        weights, or another stage's checkpoint. It has `num_parameters()` and `flops_per_token()`."""

    @abstractmethod
    def start(self, world: World) -> None:
        """Open this rank's data readers (called after `build_model`, before a resume restores the position)."""

    @abstractmethod
    def next_batch(self) -> Any:
        """This rank's next micro-batch, on `world.device`."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> BatchLoss:
        """The mean loss of a micro-batch (run under autocast; the trainer scales it and calls backward)."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """This rank's evaluation metrics as scalar tensors (eval mode, no grad, autocast); the trainer
        averages them over ranks."""

    def samples(self, model: nn.Module, step: int) -> str | None:
        """Text to watch the model learn by (rank 0, the unwrapped model, autocast); None if the stage has none."""
        return None

    def track_inputs(self, tracker: Tracker) -> None:
        """Record what the run reads with its tracking, e.g. `tracker.input_dataset(...)` (every start; the
        tracker records on rank 0 only). Nothing by default."""
        return None

    def step_metrics(self, step_seconds: float, tokens: int) -> dict[str, float]:
        """The stage's own metrics of the optimizer step just taken (every rank, after the step; given its wall
        seconds and the world's tokens), logged with the trainer's. Nothing by default."""
        return {}

    @abstractmethod
    def data_position(self) -> dict:
        """Where the training data continues, as JSON (saved in every checkpoint)."""

    @abstractmethod
    def restore_data_position(self, position: dict) -> None:
        """Continue the training data from a saved `data_position()`."""


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def check_launch(stage: Stage, world_size: int, verify_data: bool = False) -> tuple[StagePlan, Path | None]:
    """Every check before training: the config, the stage's plan for `world_size` processes, and the shape of
    the checkpoint a resume would load. Returns the plan and that checkpoint (None for a fresh start).

    Launchers call it before starting torchrun (nothing is launched or tracked for a config that fails),
    and every worker again, with `verify_data` on its node's first rank."""
    validate(stage.config)
    plan = stage.plan(world_size, verify_data)
    run_dir = Path(stage.config.run_dir)
    resume_from = latest_checkpoint(run_dir / CHECKPOINTS_SUBDIR) if stage.config.resume else None
    if resume_from is not None:
        check_same_model(resume_from, read_meta(resume_from), plan.model)
    return plan, resume_from


class Trainer:
    """One process of a (possibly distributed) training run of a stage."""

    def __init__(self, stage: Stage, world: World, plan: StagePlan, resume_from: Path | None) -> None:
        self.stage, self.world, self.plan, self.config = stage, world, plan, stage.config
        self.resumed_from = resume_from
        config = stage.config
        self.run_dir = Path(config.run_dir)
        self.ddp = world.world_size > 1
        if self.ddp:
            if world.device.type == "cuda":
                torch.cuda.set_device(world.device)
            dist.init_process_group(backend="nccl" if world.device.type == "cuda" else "gloo")
        if world.device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        seed_everything(config.seed)  # identical initial weights on every rank
        self.model = stage.build_model().to(world.device)
        seed_everything(config.seed + world.rank)  # distinct dropout masks per rank
        betas = (config.beta1, config.beta2)
        self.optimizer = adamw(self.model, config.weight_decay, config.lr, betas, world.device.type)
        stage.start(world)
        self.step = 0
        if resume_from is not None:
            meta = load_training_state(resume_from, self.model, plan.model, self.optimizer, world.rank)
            self.step = meta["step"]
            stage.restore_data_position(meta["data_position"])
            log.info("resumed from %s at step %d", resume_from, self.step)
        self.forward_model: nn.Module = torch.compile(self.model) if config.compile else self.model
        if self.ddp:
            device_ids = [world.device.index] if world.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.forward_model, device_ids=device_ids)
        self.autocast = (
            torch.autocast(world.device.type, dtype=world.dtype) if world.dtype != torch.float32 else nullcontext()
        )
        self.flops_per_token = self.model.flops_per_token()
        self.peak_flops = peak_flops(world.device, world.dtype, config.peak_flops)
        resumed_step = self.step if resume_from is not None else None  # continues the run's MLflow run
        self.tracker = Tracker(self.run_dir, config.experiment, enabled=world.rank == 0, use_mlflow=config.use_mlflow,
                               resumed_step=resumed_step, tags={"fineforge.stage": stage.name})

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.ddp:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value = value / self.world.world_size
        return value.item()

    def train_step(self) -> tuple[dict[str, float | None], int]:
        """One optimizer step over `micro_steps` micro-batches; returns its metrics and the world's tokens."""
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.forward_model.train()
        micro_steps = self.plan.micro_steps
        loss_sum = torch.zeros((), device=self.world.device)
        tokens = 0
        for micro in range(micro_steps):
            batch = self.stage.next_batch()
            last = micro == micro_steps - 1
            sync = nullcontext() if (last or not self.ddp) else self.forward_model.no_sync()
            with sync:
                with self.autocast:
                    result = self.stage.loss(self.forward_model, batch)
                (result.loss / micro_steps).backward()
            loss_sum += result.loss.detach()
            tokens += result.tokens
        grad_norm = None
        if self.config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip).item()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        metrics = {"train_loss": self._mean_over_ranks(loss_sum / micro_steps), "lr": lr, "grad_norm": grad_norm}
        return metrics, tokens * self.world.world_size

    def measured_step(self) -> dict[str, float | None]:
        """`train_step` with its time, tokens/s and MFU, and the stage's own metrics of the step."""
        t0 = time.perf_counter()
        metrics, tokens = self.train_step()
        if self.world.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        tokens_per_s = tokens / seconds
        mfu = model_flops_utilisation(self.flops_per_token, tokens_per_s, self.peak_flops, self.world.world_size)
        return {**metrics, "tokens_per_s": tokens_per_s, "mfu": mfu, "step_seconds": seconds, "tokens": tokens,
                **self.stage.step_metrics(seconds, tokens)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The stage's evaluation, averaged over ranks."""
        self.forward_model.eval()
        with self.autocast:
            local = self.stage.evaluate(self.forward_model)
        return {name: self._mean_over_ranks(value) for name, value in local.items()}

    def samples(self) -> str | None:
        self.model.eval()
        with self.autocast:
            text = self.stage.samples(self.model, self.step)
        self.model.train()
        return text

    def checkpoint(self) -> Path:
        meta = {
            **self.plan.meta,
            "model": self.plan.model,
            "stage": self.stage.name,
            "train_config": asdict(self.config),
            "data_position": self.stage.data_position(),
            "world_size": self.world.world_size,
        }
        return save_checkpoint(
            self.run_dir / CHECKPOINTS_SUBDIR, self.step, self.model, self.optimizer, meta,
            rank=self.world.rank, keep=self.config.keep_checkpoints,
        )  # fmt: skip

    def _due(self, every: int) -> bool:
        return self.step == self.config.max_steps or (every > 0 and self.step % every == 0)

    def _start(self) -> None:
        c, tracker = self.config, self.tracker
        if self.world.rank == 0:
            log.info("%s: %s parameters, %s FLOPs/token; %d ranks x %d micro-steps per step", self.stage.name,
                     f"{self.model.num_parameters():,}", f"{self.flops_per_token:,}", self.world.world_size,
                     self.plan.micro_steps)
        params = {**asdict(c), **{f"model.{k}": v for k, v in self.plan.model.items()}}
        tracker.params({**params, "world_size": self.world.world_size, "grad_accum": self.plan.micro_steps,
                        "num_parameters": self.model.num_parameters()})
        tracker.config(asdict(c))
        self.stage.track_inputs(tracker)
        tracker.event("start", step=self.step, resumed=self.resumed_from is not None,
                      world_size=self.world.world_size)

    def _log_step(self, m: dict[str, float | None]) -> None:
        self.tracker.metrics(self.step, **{k: v for k, v in m.items() if k != "tokens"})
        c = self.config
        if self.world.rank == 0 and (self.step % c.log_every == 0 or self.step == c.max_steps):
            log.info("step %d/%d | loss %.4f | lr %.2e | %.0f tok/s%s", self.step, c.max_steps, m["train_loss"],
                     m["lr"], m["tokens_per_s"], f" | MFU {100 * m['mfu']:.1f}%" if m["mfu"] is not None else "")

    def _on_cadence(self) -> tuple[dict[str, float] | None, Path | None]:
        """Evaluation, samples and checkpoint when due at this step; returns the evaluation and checkpoint."""
        c, evaluation, checkpoint = self.config, None, None
        if self._due(c.eval_every):
            evaluation = self.evaluate()
            self.tracker.metrics(self.step, **evaluation)
            if self.world.rank == 0:
                log.info("step %d | %s", self.step, " | ".join(f"{k} {v:.4f}" for k, v in evaluation.items()))
        if self.world.rank == 0 and self._due(c.sample_every):
            text = self.samples()
            if text is not None:
                self.tracker.text(text, f"samples/step_{self.step:08d}.txt")
                log.info("samples at step %d:\n%s", self.step, text)
        if self._due(c.checkpoint_every):
            checkpoint = self.checkpoint()
        return evaluation, checkpoint

    def run(self) -> dict:
        """Train to max_steps; return the summary (also written to run_dir/summary.json on rank 0)."""
        self._start()
        done = self.run_dir / SUMMARY_FILE
        if self.step >= self.config.max_steps and done.is_file():
            log.info("run already complete at step %d: %s", self.step, done)
            return json.loads(done.read_text())
        steps: list[dict[str, float | None]] = []
        evaluation, final_checkpoint = None, None
        while self.step < self.config.max_steps:
            steps.append(self.measured_step())
            self._log_step(steps[-1])
            step_evaluation, checkpoint = self._on_cadence()
            evaluation = step_evaluation or evaluation
            final_checkpoint = checkpoint or final_checkpoint
        if evaluation is None:  # killed between the final checkpoint and the summary
            evaluation = self.evaluate()
        summary = self._summary(steps, evaluation, final_checkpoint)
        if self.world.rank == 0:
            self.tracker.event("end", **summary)
            done.write_text(json.dumps(summary, indent=2))
            if final_checkpoint is not None:
                self.tracker.artifacts(final_checkpoint, "checkpoint")
        return summary

    def _summary(self, steps: list[dict], evaluation: dict[str, float], checkpoint: Path | None) -> dict:
        # the first step pays for compilation and warm-up
        measured = steps[1:] or steps
        mfus = [s["mfu"] for s in measured if s["mfu"] is not None]
        return {
            "step": self.step,
            "train_loss": steps[-1]["train_loss"] if steps else None,
            **evaluation,
            "tokens_per_s": statistics.median(s["tokens_per_s"] for s in measured) if measured else None,
            "mfu": statistics.median(mfus) if mfus else None,
            "tokens_per_step": steps[-1]["tokens"] if steps else None,
            "num_parameters": self.model.num_parameters(),
            "checkpoint": str(checkpoint) if checkpoint else None,
        }

    def train(self) -> dict:
        """`run`, then close the tracking FINISHED (FAILED on any exception) and the process group."""
        try:
            summary = self.run()
        except BaseException:
            self.close("FAILED")
            raise
        self.close()
        return summary

    def close(self, status: str = "FINISHED") -> None:
        self.tracker.close(status)
        if self.ddp:
            dist.destroy_process_group()


def start_training(stage: Stage) -> Trainer:
    """Every check, then the trainer of this process (raises one of STARTUP_ERRORS for a job that cannot start)."""
    world = World.from_env(stage.config)
    plan, resume_from = check_launch(stage, world.world_size, verify_data=world.local_rank == 0)
    return Trainer(stage, world, plan, resume_from)


def main(stage_type: type[Stage], config_type: type[TrainerConfig], argv: list[str] | None = None) -> None:
    """The torchrun entry of a stage: `python -m fineforge.model.<stage> --config FILE`.

    A job that cannot start (bad config, data, tokenizer or checkpoint) prints one REFUSED_MARK line and
    exits with EXIT_REFUSED, which tells a launcher that relaunching is pointless."""
    parser = argparse.ArgumentParser(description=f"{stage_type.name} a GPT (run under torchrun)")
    parser.add_argument("--config", required=True, help=f"JSON file of {config_type.__name__} fields")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    try:
        trainer = start_training(stage_type(load_config(config_type, args.config)))
    except STARTUP_ERRORS as exc:
        log.error("%s%s", REFUSED_MARK, exc)
        sys.exit(EXIT_REFUSED)
    trainer.train()
