"""RLConfig: one RL run on verifiable answers - the trainer's fields, the prompts, the roll-outs, the GRPO loss.

Per roll-out batch, `prompts_per_rollout` prompts (over all ranks) get `samples_per_prompt` replies each; the
batch then serves `ppo_epochs` x `minibatches` optimizer steps (`updates_per_rollout`). Presets of the loss,
as fields: GRPO (`scale_by_std`, `normalisation="sequence"`), DAPO (the default: token-level normalisation,
clip-higher 0.2 / 0.28; add `skip_zero_variance`), Dr. GRPO (`scale_by_std=false`, `normalisation="constant"`,
the constant being `max_new_tokens`). docs/rl.md has the math.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fineforge.model.config import ConfigError, require
from fineforge.model.rl.config import NORMALISATIONS, GRPOConfig
from fineforge.model.rl.watch import WatchConfig
from fineforge.model.trainer import TrainerConfig
from fineforge.model.verifiers import RewardConfig

PYTHON_TOOLS = ("calculator", "sandbox")  # what runs the model's <CODE_START> calls


@dataclass(kw_only=True)
class RLConfig(TrainerConfig):
    """An RL run: the trainer's fields plus the checkpoint, the prompt sets, the roll-outs and the loss."""

    init_checkpoint: str  # a checkpoint folder, a folder of them, or a run folder (its newest): usually SFT
    prompts: str  # JSONL: conversation records with `answer` (the conversation stage's train.jsonl) or GSM8K lines
    eval_prompts: str | None = None  # held-out JSONL of the same form: pass@1 / pass@k every eval_every steps
    tokenizer_dir: str | None = None  # vocabulary files of a published encoding
    verifier: str | None = "gsm8k"  # a registered verifier, or "package.module:attribute" of a Verifier; with a
    # reward model: the watch's judge (when no judge_model), or None
    reward_model: str | None = None  # RLHF: a reward-model checkpoint (or run folder) gives the rewards
    judge_model: str | None = None  # the watch's held-out judge: a second reward model (default: the verifier)
    reward_batch_size: int = 16  # rows per reward-model forward pass
    format_weight: float = 0.0  # added x the verifier's format check (DeepSeek-R1's format reward)
    unfinished_reward: float = 0.0  # the reward of a reply that hit the budget or never closed its turn
    python_tool: str | None = None  # None: no tools; "calculator" or "sandbox" runs the model's code calls
    prompts_per_rollout: int = 16  # prompts of one roll-out batch, over all ranks
    samples_per_prompt: int = 8  # G, the group of each prompt
    max_new_tokens: int = 256  # the token budget of a reply (tool outputs count)
    temperature: float = 1.0
    top_k: int | None = None
    sampling_threads: int | None = None  # CPU threads while sampling (None: as the update); a small model samples
    # fastest on one thread, each token's few small operations waiting on no other thread, while its update uses all
    ppo_epochs: int = 1  # passes over a roll-out batch
    minibatches: int = 1  # optimizer steps per pass
    micro_batch_size: int = 8  # rows per rank per forward pass
    scale_by_std: bool = True  # advantages divided by the group's std (GRPO); false: Dr. GRPO
    normalisation: str = "token"  # token (DAPO), sequence (GRPO) or constant (Dr. GRPO)
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_beta: float = 0.0  # weight of the k3 KL to a frozen reference (0: no reference is kept)
    reference_checkpoint: str | None = None  # default: init_checkpoint
    kl_target: float | None = None  # adapt kl_beta towards this KL per token (Ziegler et al.); None: fixed beta
    kl_horizon: int = 10_000  # roll-outs over which the adaptive beta moves by about e^(+-0.2)
    watch_window: int = 0  # RLHF: evaluations of the reward-hacking watch's window (0: no watch; >= 3)
    watch_min_rise: float = 0.0  # the reward-model score's least-squares rise across the window that counts
    watch_min_fall: float = 0.0  # the judge's least-squares fall across the window that counts
    skip_zero_variance: bool = False  # drop groups whose rewards are all equal (always counted)
    entropy_weight: float = 0.0  # x each completion position's entropy in the loss: > 0 sharpens, < 0 a bonus
    eval_count: int = 64  # held-out prompts evaluated (the first ones of eval_prompts)
    eval_samples: int = 4  # samples per held-out prompt
    pass_k: int = 4  # the k of pass@k (at most eval_samples)
    pass_threshold: float = 1.0  # a held-out sample passes when its verifier reward reaches this
    sample_groups: int = 2  # roll-out groups written as text (with rewards) every sample_every steps
    max_steps: int = 200
    lr: float = 1e-5
    min_lr: float = 1e-5
    warmup_steps: int = 0
    decay: str = "constant"
    weight_decay: float = 0.0
    eval_every: int = 20
    sample_every: int = 20
    checkpoint_every: int = 20
    experiment: str = "rl"

    def check_ranges(self) -> None:
        super().check_ranges()
        for name in ("prompts_per_rollout", "samples_per_prompt", "max_new_tokens", "ppo_epochs", "minibatches",
                     "micro_batch_size", "eval_count", "eval_samples", "pass_k", "sample_groups"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.temperature > 0, self, "temperature", "must be > 0 (the importance ratio needs a distribution)")
        require(self.top_k is None or self.top_k > 0, self, "top_k", "must be > 0")
        require(self.sampling_threads is None or self.sampling_threads > 0, self, "sampling_threads",
                "must be null (as the update) or > 0")
        require(self.pass_k <= self.eval_samples, self, "pass_k", f"must be at most eval_samples={self.eval_samples}")
        require(self.normalisation in NORMALISATIONS, self, "normalisation", f"must be one of {NORMALISATIONS}")
        require(self.python_tool is None or self.python_tool in PYTHON_TOOLS, self, "python_tool",
                f"must be null or one of {PYTHON_TOOLS}")
        updates = self.updates_per_rollout
        for name in ("max_steps", "checkpoint_every"):
            require(getattr(self, name) % updates == 0, self, name, f"must be a multiple of the updates per roll-out "
                    f"batch (ppo_epochs x minibatches = {updates}), so that no checkpoint falls inside a batch")
        self.check_feedback()
        run_dir = Path(self.run_dir).resolve()
        for name in ("init_checkpoint", "reference_checkpoint"):
            path = getattr(self, name)
            inside = path is not None and run_dir in (Path(path).resolve(), *Path(path).resolve().parents)
            require(not inside, self, name, "must lie outside run_dir (its checkpoints are the run's resume points)")
        self.grpo()
        self.reward()

    def check_feedback(self) -> None:
        """The reward source, the adaptive KL and the watch fit together."""
        require(self.verifier is not None or self.reward_model is not None, self, "verifier",
                "needed without a reward_model (the rewards come from one of them)")
        for name in ("reward_batch_size", "kl_horizon"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.kl_target is None or (self.kl_target > 0 and self.kl_beta > 0), self, "kl_target",
                "must be > 0, with kl_beta > 0 (the starting beta) to adapt")
        if self.watch_window:
            require(self.watch_window >= 3, self, "watch_window", "must be 0 (no watch) or >= 3 evaluations")
            for name in ("watch_min_rise", "watch_min_fall"):
                require(getattr(self, name) >= 0, self, name, "must be >= 0")
            require(self.reward_model is not None, self, "watch_window", "the watch needs a reward_model")
            require(self.judge_model is not None or self.verifier is not None, self, "judge_model",
                    "the watch needs a judge: a judge_model or a verifier")
            require(self.eval_prompts is not None and self.eval_every > 0, self, "eval_prompts",
                    "the watch evaluates held-out prompts every eval_every (> 0) steps")
            require(self.checkpoint_every > 0 and self.eval_every % self.checkpoint_every == 0, self,
                    "checkpoint_every", f"must divide eval_every={self.eval_every}: the watch keeps the checkpoint "
                    "of its best evaluation")

    def watch(self) -> WatchConfig:
        return WatchConfig(self.watch_window, self.watch_min_rise, self.watch_min_fall)

    @property
    def updates_per_rollout(self) -> int:
        """Optimizer steps per roll-out batch."""
        return self.ppo_epochs * self.minibatches

    @property
    def records_old_logprobs(self) -> bool:
        """Whether a roll-out batch gets the sampling policy's log-probs (a forward pass over it): for the ratio of
        its later updates, or the adaptive KL's measure. With one update per batch the update's own log-probs,
        detached, are the old policy's (ratio 1: the plain policy gradient)."""
        return self.updates_per_rollout > 1 or self.kl_target is not None

    def grpo(self) -> GRPOConfig:
        """The loss's options (the constant of Dr. GRPO's normalisation is the token budget)."""
        constant = self.max_new_tokens if self.normalisation == "constant" else None
        try:
            return GRPOConfig(scale_by_std=self.scale_by_std, normalisation=self.normalisation,
                              constant_normaliser=constant, clip_low=self.clip_low, clip_high=self.clip_high,
                              kl_beta=self.kl_beta, skip_zero_variance=self.skip_zero_variance,
                              entropy_weight=self.entropy_weight)
        except ValueError as exc:  # "GRPOConfig.clip_low must be ..." names the field
            raise ConfigError(re.sub(r"^GRPOConfig\.(\w+) ", r"rl config field '\1': ", str(exc))) from exc

    def reward(self) -> RewardConfig:
        return RewardConfig(format_weight=self.format_weight, unfinished=self.unfinished_reward)
