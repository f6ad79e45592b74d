"""RL on verifiable answers (GRPO family), a stage of the shared trainer.

    torchrun --standalone --nproc-per-node N -m fineforge.model.rl --config FILE

Per roll-out batch: `prompts_per_rollout` prompts (each rank its share) x G replies from the batched engine
with the current weights (tools when configured), rewards from the verifier (a verifier that raises gives 0,
counted), group-relative advantages, and the old policy's log-probs (with one update per batch, the update's
own, detached); the batch then feeds `ppo_epochs` x `minibatches` optimizer steps of the clipped objective
(plus the KL to a frozen reference when `kl_beta` > 0). The data position is the number of roll-out batches
taken: prompts come in a seeded order per epoch and replies from seeds of their place in it, so a resumed run
samples exactly what the interrupted one would have (checkpoints fall only between roll-out batches).

Logged every step: reward mean / std, the share of zero-variance groups, reply lengths, entropy, clip
fraction, KL (with a reference), roll-out and update tokens/s; every `eval_every` steps pass@1 and pass@k on
the held-out prompts; every `sample_every` steps some roll-out groups with their rewards as text.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from fineforge.model.chat import ChatTemplate
from fineforge.model.checkpoint import load_weights_into, read_meta
from fineforge.model.engine import Engine, SamplingConfig, row_seed
from fineforge.model.gpt import GPT
from fineforge.model.reward_model import load_reward_model
from fineforge.model.rl.advantages import group_advantages, groups_to_train, zero_variance_groups
from fineforge.model.rl.buffer import (
    BufferLayout,
    MicroBatch,
    local_step_totals,
    micro_batches,
    row_logprobs,
    step_order,
    training_rows,
)
from fineforge.model.rl.checks import (
    check_reference,
    check_resume_prompts,
    check_reward_model,
    checkpoint_model,
    checkpoint_tokenizer,
    field_error,
    prompt_set,
    resolve_verifier,
)
from fineforge.model.rl.evaluation import held_out_passes
from fineforge.model.rl.feedback import (
    BEST_CHECKPOINT,
    WATCH_METRICS,
    ModelScorer,
    keep_best_checkpoint,
    model_rewards,
    verifier_judge,
    watch_sums,
)
from fineforge.model.rl.kl_control import KLController, sampled_kl
from fineforge.model.rl.logprobs import completion_logprobs
from fineforge.model.rl.loss import masked_sum, policy_loss
from fineforge.model.rl.rollouts import Rollout, RolloutSampler, RolloutStats, score_groups
from fineforge.model.rl.stage_config import RLConfig
from fineforge.model.rl.watch import RewardHackingWatch
from fineforge.model.tokenizer import IM_END
from fineforge.model.tool_loop import PYTHON, ToolLoop
from fineforge.model.trainer import BatchLoss, Stage, StagePlan, World
from fineforge.model.verifiers import SafeScorer

log = logging.getLogger(__name__)

STAGE = "rl"
EVAL_STREAM = 1 << 40  # the held-out samples' seed stream, apart from every roll-out batch's
SHOWN_ANSWER = 60  # characters of a prompt's reference answer shown with its roll-outs (GSM8K's are solutions)
UPDATE_SUMS = ("clip_fraction", "kl", "ratio_mean", "entropy")  # token-weighted sums over a step, then the count


def micro_steps_per_update(config: RLConfig, world_size: int) -> int:
    """Micro-batches per optimizer step for a world of `world_size` ranks (each rank samples its share of prompts)."""
    c = config
    if c.prompts_per_rollout % world_size:
        raise field_error("prompts_per_rollout", f"{c.prompts_per_rollout} prompts do not split over {world_size} "
                                                 "ranks: use a multiple of the world size")
    rows = c.prompts_per_rollout // world_size * c.samples_per_prompt
    per_update, rest = divmod(rows, c.minibatches)
    if rest or per_update % c.micro_batch_size:
        raise field_error("micro_batch_size", f"each rank's {rows} roll-outs (prompts_per_rollout / world_size x "
                                              f"samples_per_prompt) in {c.minibatches} minibatch(es) do not split "
                                              f"into micro-batches of {c.micro_batch_size} rows")
    return per_update // c.micro_batch_size


class RLStage(Stage):
    """The clipped policy-gradient objective on the stage's own roll-outs, starting from a checkpoint's weights."""

    name = STAGE
    config: RLConfig

    def plan(self, world_size: int, verify_data: bool) -> StagePlan:
        c = self.config
        self.init_path, init_meta, self.model_config = checkpoint_model("init_checkpoint", c.init_checkpoint)
        if init_meta.get("stage") == "pretrain":
            log.warning("%s is a pretrained checkpoint, not an SFT one: its replies may never state an answer",
                        self.init_path)
        self.tokenizer = checkpoint_tokenizer(self.init_path, init_meta, self.model_config, c.tokenizer_dir)
        self.verifier = resolve_verifier(c.verifier) if c.verifier else None
        if c.python_tool == "sandbox":
            from fineforge.model.tools.sandbox import namespaces_available

            if not namespaces_available():
                raise field_error("python_tool", "the Python sandbox needs Linux namespaces (root and `unshare`), "
                                                 "not available here; use \"calculator\" for arithmetic")
        room = self.model_config.block_size - c.max_new_tokens
        if room < 1:
            raise field_error("max_new_tokens", f"{c.max_new_tokens} leaves no room for a prompt in the model's "
                                                f"context of {self.model_config.block_size}")
        template = ChatTemplate(self.tokenizer)
        self.train_set = prompt_set("prompts", c.prompts, self.verifier, template, room)
        check_resume_prompts(c, self.train_set.sha256)
        self.eval_set = prompt_set("eval_prompts", c.eval_prompts, self.verifier, template, room) \
            if c.eval_prompts else None
        self.reference_path = check_reference(c, init_meta, self.model_config)
        self.reward_paths = {name: check_reward_model(name, getattr(c, name), self.tokenizer, self.model_config)
                             for name in ("reward_model", "judge_model") if getattr(c, name)}
        meta = {
            "tokenizer": init_meta["tokenizer"],
            "init_checkpoint": {"path": str(self.init_path.resolve()), "step": init_meta["step"],
                                "stage": init_meta.get("stage")},
            "prompts": {"path": str(self.train_set.path.resolve()), "sha256": self.train_set.sha256},
            "verifier": self.verifier.name if self.verifier else None,
            **{name: str(path.resolve()) for name, path in self.reward_paths.items()},
        }  # fmt: skip
        return StagePlan(micro_steps_per_update(c, world_size), self.model_config.to_dict(), meta)

    def build_model(self) -> nn.Module:
        self.policy = GPT(self.model_config)
        load_weights_into(self.policy, self.init_path, read_meta(self.init_path))
        return self.policy

    def start(self, world: World) -> None:
        c = self.config
        self.world, self.device = world, world.device
        self.autocast = torch.autocast(world.device.type, dtype=world.dtype) \
            if world.dtype != torch.float32 else nullcontext()
        stop_id = self.tokenizer.encode_special(IM_END)
        sampling = SamplingConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_k=c.top_k,
                                  stop_tokens=(stop_id,))
        engine = Engine(self.policy, vocab_size=self.tokenizer.vocab_size)
        self.sampler = RolloutSampler(engine, sampling, self.tokenizer, stop_id, self._tools(), c.sampling_threads)
        self.scorer = SafeScorer(self.verifier, c.reward()) if self.verifier else None
        self.eval_scorer = SafeScorer(self.verifier) if self.verifier else None  # held out: the verifier's own reward
        self.reward_scorer = self._model_scorer("reward_model")
        self.judge = verifier_judge(self.eval_scorer) if self.eval_scorer else None
        if "judge_model" in self.reward_paths:
            self.judge = self._model_scorer("judge_model")
        self.kl = KLController(c.kl_beta, c.kl_target, c.kl_horizon)
        self.watch = RewardHackingWatch(c.watch()) if c.watch_window else None
        self.steps_taken = 0  # optimizer steps (restored with the data position)
        self.grpo = c.grpo()
        self.layout = BufferLayout(c.ppo_epochs, c.minibatches, c.micro_batch_size, world.world_size)
        self.reference = self._reference()
        self.queue: deque[MicroBatch] = deque()
        self.rollout_batches = 0  # roll-out batches taken: the data position
        self.rollout_stats: RolloutStats | None = None  # of the batch sampled during the current step
        self.last_rollouts: tuple[list[Rollout], list[int]] = ([], [])
        self.update_sums = torch.zeros(len(UPDATE_SUMS) + 1, dtype=torch.float64)
        self._orders: dict[int, list[int]] = {}
        if world.rank == 0:
            log.info("rl: %d prompts (%d held out), %d x %d roll-outs a batch, %d update(s) per batch, rewards: %s",
                     len(self.train_set.ids), len(self.eval_set.ids) if self.eval_set else 0, c.prompts_per_rollout,
                     c.samples_per_prompt, c.updates_per_rollout, c.reward_model or f"verifier {self.verifier.name}")

    def _model_scorer(self, name: str) -> ModelScorer | None:
        """The reward model a field names, on this rank's device, as a scorer of roll-outs (None without one)."""
        if name not in self.reward_paths:
            return None
        model, _ = load_reward_model(self.reward_paths[name], str(self.device))
        return ModelScorer(model.requires_grad_(False), self.tokenizer.eot_id, self.config.unfinished_reward,
                           self.config.reward_batch_size)

    def _tools(self) -> ToolLoop | None:
        if self.config.python_tool is None:
            return None
        if self.config.python_tool == "calculator":
            from fineforge.model.tools.calculator import calculator as tool
        else:
            from fineforge.model.tools.sandbox import PythonSandbox

            tool = PythonSandbox()
        return ToolLoop({PYTHON: tool}, self.tokenizer)

    def _reference(self) -> GPT | None:
        if self.reference_path is None:
            return None
        reference = GPT(self.model_config)
        load_weights_into(reference, self.reference_path, read_meta(self.reference_path))
        return reference.to(self.device).eval().requires_grad_(False)

    def prompt_index(self, slot: int) -> int:
        """The prompt at place `slot` of the run's prompt stream: every epoch the whole set in a seeded order."""
        count = len(self.train_set.ids)
        epoch, place = divmod(slot, count)
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(row_seed(self.config.seed, epoch))
            self._orders = {epoch: torch.randperm(count, generator=generator).tolist()}
        return self._orders[epoch][place]

    def next_batch(self) -> MicroBatch:
        if not self.queue:
            self._refill()
        return self.queue.popleft().to(self.device)

    def _refill(self) -> None:
        """Sample, score and record this rank's share of the next roll-out batch; queue its micro-batches."""
        c, rank = self.config, self.world.rank
        started, errors_before = time.perf_counter(), self._verifier_errors()
        share = c.prompts_per_rollout // self.world.world_size
        first = self.rollout_batches * c.prompts_per_rollout + rank * share
        indices = [self.prompt_index(first + i) for i in range(share)]
        seed = row_seed(c.seed, self.rollout_batches)
        with self.autocast:
            rollouts = self.sampler.sample([self.train_set.ids[i] for i in indices], c.samples_per_prompt, seed,
                                           rank * share)
        self.policy.train()  # the engine samples in eval mode
        metadata = [self.train_set.prompts[i].metadata for i in indices]
        with self.autocast:
            rewards = model_rewards(rollouts, c.samples_per_prompt, self.reward_scorer) if self.reward_scorer \
                else score_groups(rollouts, metadata, c.samples_per_prompt, self.scorer)
        kept = groups_to_train(rewards, self.grpo)
        rows = training_rows(rollouts, group_advantages(rewards, self.grpo), kept, c.samples_per_prompt)
        pad_id = self.tokenizer.eot_id
        with self.autocast:
            if c.records_old_logprobs:
                for row, logp in zip(rows, row_logprobs(self.policy, rows, c.micro_batch_size, pad_id,
                                                        c.temperature, self.device), strict=True):
                    row.old_logp = logp
            if self.reference is not None:
                for row, logp in zip(rows, row_logprobs(self.reference, rows, c.micro_batch_size, pad_id,
                                                        c.temperature, self.device), strict=True):
                    row.ref_logp = logp
        if self.reference is not None and self.kl.target is not None:
            kl_sum, tokens = self._world_sum(torch.tensor(sampled_kl(
                [r.old_logp for r in rows], [r.ref_logp for r in rows], [r.weights for r in rows]),
                dtype=torch.float64)).tolist()
            if tokens > 0:
                self.grpo.kl_beta = self.kl.update(kl_sum / tokens, c.prompts_per_rollout * c.samples_per_prompt)
        steps = step_order(len(rows), self.layout, row_seed(seed, rank))
        totals = self._world_sum(local_step_totals(rows, steps))
        self.queue.extend(micro_batches(rows, steps, totals, self.layout, pad_id))
        self.rollout_stats = RolloutStats.of(rollouts, rewards, zero_variance_groups(rewards), ~kept,
                                             self._verifier_errors() - errors_before, started)
        self.last_rollouts = (rollouts, indices)
        self.rollout_batches += 1

    def loss(self, model: nn.Module, batch: MicroBatch) -> BatchLoss:
        logp, entropy = completion_logprobs(model, batch.tokens, self.config.temperature, with_entropy=True,
                                            entropy_grad=self.grpo.entropy_weight != 0)
        old_logp = batch.old_logp if self.config.records_old_logprobs else logp.detach()  # the sampling policy
        out = policy_loss(logp, old_logp, batch.advantages, batch.weights, self.grpo, batch.ref_logp,
                          batch_tokens=batch.step_tokens, batch_sequences=batch.step_sequences, entropy=entropy)
        with torch.no_grad():
            tokens = batch.weights.sum()
            means = (out.clip_fraction, out.kl, out.ratio_mean)
            sums = [float(m * tokens) for m in means] + [float(masked_sum(entropy, batch.weights)), float(tokens)]
            self.update_sums += torch.tensor(sums, dtype=torch.float64)
        return BatchLoss(out.loss * batch.scale, batch.tokens.shape[0] * (batch.tokens.shape[1] - 1))

    def step_metrics(self, step_seconds: float, tokens: int) -> dict[str, float]:
        """Update diagnostics (token-weighted over the step and the world) every step; the roll-out batch's
        statistics on the steps that sampled one."""
        sums = self._world_sum(self.update_sums).tolist()
        self.update_sums.zero_()
        count = max(sums[-1], 1.0)
        metrics = {name: value / count for name, value in zip(UPDATE_SUMS, sums[:-1], strict=True)}
        if self.reference is None:
            del metrics["kl"]
        else:
            metrics["kl_beta"] = self.grpo.kl_beta
        self.steps_taken += 1
        rollout_seconds = 0.0
        if self.rollout_stats is not None:
            stats, self.rollout_stats = self.rollout_stats, None
            longest, slowest = self._world_max([float(stats.max_length), stats.seconds])
            metrics.update(stats.metrics(self._world_sum(torch.tensor(stats.summed(), dtype=torch.float64)).tolist(),
                                         longest, slowest))
            rollout_seconds = stats.seconds
        metrics["update_tokens_per_s"] = tokens / max(step_seconds - rollout_seconds, 1e-9)
        return metrics

    def evaluate(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """On the first `eval_count` held-out prompts (each rank a contiguous share): with a reward model the
        watch's measures (and the watch updated), else pass@1 and pass@k."""
        if self.eval_set is None:
            return {}
        c, world = self.config, self.world
        count = min(c.eval_count, len(self.eval_set.ids))
        start, end = count * world.rank // world.world_size, count * (world.rank + 1) // world.world_size
        chunk = max(1, c.prompts_per_rollout // world.world_size * c.samples_per_prompt // c.eval_samples)
        values = self._watch_values(start, end, chunk) if self.reward_scorer else self._passes(start, end, chunk,
                                                                                                count)
        return {name: torch.tensor(value, device=self.device) for name, value in values.items()}

    def _watch_values(self, start: int, end: int, chunk: int) -> dict[str, float]:
        """Reward-model score, judge score and reply statistics of the held-out replies; the watch fed."""
        c, judge = self.config, self.judge or (lambda rollouts, metadata: [0.0] * len(rollouts))
        sums = watch_sums(self.sampler, self.eval_set.ids[start:end], self.eval_set.metadata[start:end],
                          c.eval_samples, row_seed(c.seed, EVAL_STREAM), start, chunk, self.reward_scorer, judge)
        totals = self._world_sum(torch.tensor(sums, dtype=torch.float64)).tolist()
        values = {f"watch_{name}": total / max(totals[-1], 1.0) for name, total in zip(WATCH_METRICS, totals,
                                                                                       strict=False)}
        if self.judge is None:
            del values["watch_judge"]
        watch = self.watch
        if watch is not None and (not watch.points or watch.points[-1].step < self.steps_taken):  # not re-evaluated
            watch.update(self.steps_taken, values["watch_reward_model"], values["watch_judge"])
        return values

    def _passes(self, start: int, end: int, chunk: int, count: int) -> dict[str, float]:
        """pass@1, pass@k, mean reward and reply length of the held-out samples, over the world."""
        c = self.config
        result = held_out_passes(self.sampler, self.eval_set.ids[start:end], self.eval_set.metadata[start:end],
                                 c.eval_samples, self.eval_scorer, c.pass_threshold, row_seed(c.seed, EVAL_STREAM),
                                 start, chunk)
        prompts = len(result.correct)
        sums = torch.tensor([result.pass_at(1) * prompts, result.pass_at(c.pass_k) * prompts, result.reward_sum,
                             result.length_sum], dtype=torch.float64)
        pass_1, pass_k, reward, length = (self._world_sum(sums) / torch.tensor([count, count, count * c.eval_samples,
                                                                                count * c.eval_samples])).tolist()
        return {"pass_at_1": pass_1, f"pass_at_{c.pass_k}": pass_k, "eval_reward_mean": reward,
                "eval_response_length": length}

    def early_stop(self) -> dict | None:
        """With the watch: keep the checkpoint of each new best judge score; stop where the watch fires."""
        watch = self.watch
        if watch is None or not watch.points or watch.points[-1].step != self.steps_taken:
            return None  # no evaluation at this step
        run_dir = Path(self.config.run_dir)
        if watch.best_step == self.steps_taken and self.world.rank == 0:
            keep_best_checkpoint(run_dir)
        if watch.fired_at != self.steps_taken:
            return None
        log.warning("reward-hacking watch fired at step %d: the reward model's score rose while the judge's fell; "
                    "stopping at the best checkpoint (step %s)", self.steps_taken, watch.best_step)
        return {"watch_fired_at": watch.fired_at, "best_step": watch.best_step,
                "checkpoint": str(run_dir / BEST_CHECKPOINT),
                "tags": {"fineforge.watch": "fired", "fineforge.watch.best_step": str(watch.best_step)}}

    def samples(self, model: nn.Module, step: int) -> str | None:
        """The first `sample_groups` groups of the newest roll-out batch (this rank's), with rewards."""
        rollouts, indices = self.last_rollouts
        if not rollouts:
            return None
        g, parts = self.config.samples_per_prompt, []
        for group, index in enumerate(indices[: self.config.sample_groups]):
            prompt = self.train_set.prompts[index]
            answer = str(prompt.metadata.get("answer"))
            answer = answer if len(answer) <= SHOWN_ANSWER else "..." + answer[-SHOWN_ANSWER:]
            parts.append(f"=== prompt {prompt.metadata.get('id', index)} (answer {answer!r}):\n"
                         f"{prompt.messages.messages[-1].content}\n")
            for rollout in rollouts[group * g : (group + 1) * g]:
                parts.append(f"--- reward {rollout.reward:g}, {rollout.finish_reason}, "
                             f"{len(rollout.completion)} tokens:\n{rollout.text}\n")
        return "".join(parts)

    def data_position(self) -> dict:
        c = self.config
        return {"rollout_batches": self.rollout_batches, "prompts_taken": self.rollout_batches * c.prompts_per_rollout,
                "prompts_sha256": self.train_set.sha256, "kl_beta": self.grpo.kl_beta,
                "watch": self.watch.state() if self.watch else None}

    def restore_data_position(self, position: dict) -> None:
        self.rollout_batches = int(position["rollout_batches"])
        self.steps_taken = self.rollout_batches * self.config.updates_per_rollout  # checkpoints fall between batches
        self.grpo.kl_beta = self.kl.beta = position.get("kl_beta", self.grpo.kl_beta)
        if self.watch is not None and position.get("watch"):
            self.watch = RewardHackingWatch.restored(self.config.watch(), position["watch"])

    def _verifier_errors(self) -> int:
        return self.scorer.errors.total() if self.scorer else 0

    def _world_sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (a CPU tensor in, a CPU tensor out)."""
        if not (dist.is_available() and dist.is_initialized()):
            return values
        reduced = values.to(self.device)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced.cpu()

    def _world_max(self, values: list[float]) -> list[float]:
        reduced = torch.tensor(values, dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            reduced = reduced.to(self.device)
            dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
        return reduced.cpu().tolist()
