"""The reward model, a stage of the shared trainer: a GPT trunk from an SFT (or pretrained) checkpoint with a
scalar head, trained on a preference set with the pairwise Bradley-Terry loss.

    torchrun --standalone --nproc-per-node N -m fineforge.model.reward --config FILE

A micro-batch holds `micro_batch_size` whole rankings: each completion is scored once and every ordered
pair of the ranking (or only best vs worst) enters the loss, with an optional margin per rank of gap and
a reward-centering term. The evaluation is the held-out pairwise accuracy, mean margin and loss, exact
over all held-out pairs whatever the number of ranks. Checkpoints say `stage: "reward"` and record the
tokenizer (with its fingerprint), so that a policy of another tokenizer can refuse the model
(`reward_model.require_same_tokenizer`). Everything else is `model/trainer.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fineforge.model.chat import ChatFormatError, require_chat_tokens
from fineforge.model.checkpoint import CheckpointError, find_checkpoint, load_weights_into, model_config, read_meta
from fineforge.model.config import ConfigError, require
from fineforge.model.data import DataPosition
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.preference_data import (
    PAIRINGS,
    PairBatch,
    RankingLoader,
    chunks,
    collate,
    count_pairs,
    load_preference_manifest,
    read_split,
)
from fineforge.model.reward_model import (
    STAGE,
    RewardModel,
    bradley_terry_loss,
    reward_model_shape,
    score_rows,
    tokenizer_record,
)
from fineforge.model.tokenizer import IM_END, Tokenizer, TokenizerError, load_tokenizer
from fineforge.model.trainer import BatchLoss, Stage, StagePlan, TrainerConfig, World, main

SAMPLE_CHARS = 160  # of each prompt and reply shown in the samples


@dataclass(kw_only=True)
class RewardConfig(TrainerConfig):
    """A reward-model run: the trainer's fields plus the trunk's checkpoint, the preference set and the loss."""

    data_dir: str  # a preference set (`fineforge reward pairs`)
    init_checkpoint: str  # the SFT (or pretrained) checkpoint of the trunk: a checkpoint folder or a run folder
    tokenizer_dir: str | None = None  # vocabulary files of a published encoding
    pairing: str = "all"  # all: every ordered pair of a ranking; best_worst: one pair per ranking
    margin: float = 0.0  # a pair must be separated by margin x its rank gap (0: plain Bradley-Terry)
    centering: float = 0.0  # weight of mean((r_chosen + r_rejected)^2), which keeps scores near zero
    dropout: float | None = None  # the trunk's dropout; default the checkpoint's
    micro_batch_size: int = 8  # rankings per rank per forward pass
    rankings_per_step: int | None = None  # per optimizer step over all ranks; default one micro-batch per rank
    eval_batch_size: int = 16  # held-out rankings per forward pass
    eval_rankings: int | None = None  # held-out rankings evaluated (the first ones); default all
    sample_rankings: int = 3  # held-out rankings whose scores are shown as samples
    shuffle: bool = True
    verify_data: bool = True  # check the preference set's sha256 before training
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 20
    max_steps: int = 1000
    eval_every: int = 100
    sample_every: int = 100
    checkpoint_every: int = 200
    experiment: str = "reward"

    def check_ranges(self) -> None:
        super().check_ranges()
        for name in ("micro_batch_size", "eval_batch_size", "sample_rankings"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        for name in ("rankings_per_step", "eval_rankings"):
            require(getattr(self, name) is None or getattr(self, name) > 0, self, name, "must be > 0")
        require(self.pairing in PAIRINGS, self, "pairing", f"must be one of {PAIRINGS}")
        require(self.margin >= 0, self, "margin", "must be >= 0")
        require(self.centering >= 0, self, "centering", "must be >= 0")
        require(self.dropout is None or 0 <= self.dropout < 1, self, "dropout", "must be in [0, 1)")


def micro_steps(config: RewardConfig, world_size: int) -> int:
    """Micro-steps per optimizer step so that the world takes exactly `rankings_per_step` rankings."""
    per_micro = config.micro_batch_size * world_size
    if config.rankings_per_step is None:
        return 1
    if config.rankings_per_step % per_micro:
        raise ConfigError(f"reward config field 'rankings_per_step': {config.rankings_per_step} is not a multiple of "
                          f"micro_batch_size x world_size = {config.micro_batch_size} x {world_size} = {per_micro}")
    return config.rankings_per_step // per_micro


def trunk_checkpoint(config: RewardConfig) -> tuple[Path, dict, GPTConfig, Tokenizer]:
    """The trunk's checkpoint, metadata, shape (with the dropout override) and tokenizer, checked: a language
    model (not a reward model) whose tokenizer loads and carries the chat tokens inside the model's vocabulary."""
    try:
        path = find_checkpoint(config.init_checkpoint)
        meta = read_meta(path)
        if meta.get("stage") == STAGE:
            raise CheckpointError(f"{path} is a reward model; start from the SFT (or pretrained) checkpoint")
        shape = model_config(path, meta)
    except CheckpointError as exc:
        raise ConfigError(f"reward config field 'init_checkpoint': {exc}") from exc
    spec = (meta.get("tokenizer") or {}).get("spec")
    try:
        if not isinstance(spec, str):
            raise TokenizerError(f"{path} records no tokenizer")
        tokenizer = load_tokenizer(spec, config.tokenizer_dir)
        require_chat_tokens(tokenizer, shape.vocab_size)
    except (TokenizerError, ChatFormatError) as exc:
        raise ConfigError(f"reward config fields 'init_checkpoint'/'tokenizer_dir': {exc}") from exc
    if config.dropout is not None:
        shape = GPTConfig.from_dict({**shape.to_dict(), "dropout": config.dropout})
    return path, meta, shape, tokenizer


def check_preference_set(config: RewardConfig, manifest: dict, tokenizer: dict, block_size: int) -> None:
    """The preference set was tokenized like the trunk's text, fits its context and holds held-out rankings."""
    where = f"reward config field 'data_dir': {config.data_dir}"
    data_tokenizer = manifest["tokenizer"]
    if data_tokenizer.get("fingerprint") != tokenizer["fingerprint"]:
        raise ConfigError(f"{where} was tokenized with {data_tokenizer.get('name')!r} "
                          f"({data_tokenizer.get('vocab_size')} ids), the checkpoint {config.init_checkpoint} uses "
                          f"{tokenizer['name']!r} ({tokenizer['vocab_size']} ids): build the set with the "
                          "checkpoint's tokenizer")
    if manifest["longest_row"] > block_size:
        raise ConfigError(f"{where} holds rows of up to {manifest['longest_row']} tokens, more than the model's "
                          f"context of {block_size}: build the set with max_length <= {block_size}")
    if not manifest["counts"]["heldout"]["rankings"]:
        raise ConfigError(f"{where} holds no held-out rankings to evaluate on: build it with a larger "
                          "heldout_fraction or more rankings")


class RewardStage(Stage):
    """Bradley-Terry on the training rankings; pairwise accuracy, margin and loss on the held-out ones."""

    name = STAGE
    config: RewardConfig

    def plan(self, world_size: int, verify_data: bool) -> StagePlan:
        c = self.config
        self.init_path, init_meta, self.trunk_config, self.tokenizer = trunk_checkpoint(c)
        tokenizer = tokenizer_record(init_meta["tokenizer"]["spec"], self.tokenizer)
        self.manifest = load_preference_manifest(c.data_dir, verify=c.verify_data and verify_data)
        check_preference_set(c, self.manifest, tokenizer, self.trunk_config.block_size)
        train_rankings = self.manifest["counts"]["train"]["rankings"]
        if train_rankings < c.micro_batch_size * world_size:
            raise ConfigError(f"reward config field 'micro_batch_size': {c.data_dir} holds {train_rankings} training "
                              f"rankings, fewer than micro_batch_size x world_size = {c.micro_batch_size} x "
                              f"{world_size}")
        self.end_id = self.tokenizer.encode_special(IM_END)
        reward = {"end_id": self.end_id, "init_checkpoint": str(self.init_path), "init_step": init_meta["step"],
                  "init_stage": init_meta.get("stage"), "pairing": c.pairing}
        return StagePlan(micro_steps(c, world_size), reward_model_shape(self.trunk_config),
                         {"tokenizer": tokenizer, "reward": reward})

    def build_model(self) -> nn.Module:
        trunk = GPT(self.trunk_config)
        load_weights_into(trunk, self.init_path, read_meta(self.init_path))
        return RewardModel(trunk, self.end_id)

    def start(self, world: World) -> None:
        c = self.config
        self.device, self.rank, self.world_size = world.device, world.rank, world.world_size
        train = read_split(c.data_dir, self.manifest, "train")
        self.heldout = read_split(c.data_dir, self.manifest, "heldout")[: c.eval_rankings]
        self.loader = RankingLoader(train, c.micro_batch_size, world.rank, world.world_size, c.shuffle, c.seed)
        self.heldout_pairs = count_pairs(self.heldout, c.pairing)

    def next_batch(self) -> PairBatch:
        return collate(self.loader.next_rankings(), self.tokenizer.eot_id, self.config.pairing).to(self.device)

    def pair_scores(self, model: nn.Module, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (chosen, rejected) of every pair of the batch."""
        scores = model(batch.tokens, batch.lengths)
        return scores[batch.chosen], scores[batch.rejected]

    def pair_losses(self, chosen: torch.Tensor, rejected: torch.Tensor, batch: PairBatch) -> torch.Tensor:
        c = self.config
        margin = c.margin * batch.rank_gaps.float() if c.margin else None
        return bradley_terry_loss(chosen, rejected, margin, c.centering)

    def loss(self, model: nn.Module, batch: PairBatch) -> BatchLoss:
        chosen, rejected = self.pair_scores(model, batch)
        return BatchLoss(self.pair_losses(chosen, rejected, batch), batch.tokens.numel())

    def evaluate(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Held-out pairwise accuracy (a tie counts one half), mean margin and loss over every held-out pair.
        Rank r scores rankings r, r + world_size, ...; its sums are divided by the world's pair count and
        multiplied by the world size, so that the trainer's mean over ranks is the exact mean over all pairs."""
        model = getattr(model, "module", model)  # no DDP wrapper: ranks score different numbers of batches
        sums = torch.zeros(3, device=self.device)
        mine = self.heldout[self.rank :: self.world_size]
        for rankings in chunks(mine, self.config.eval_batch_size):
            batch = collate(rankings, self.tokenizer.eot_id, self.config.pairing).to(self.device)
            chosen, rejected = self.pair_scores(model, batch)
            right = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
            sums += torch.stack([right.sum(), (chosen - rejected).sum(),
                                 self.pair_losses(chosen, rejected, batch) * chosen.numel()])
        means = sums * self.world_size / self.heldout_pairs
        return {"heldout_accuracy": means[0], "heldout_margin": means[1], "heldout_loss": means[2]}

    def samples(self, model: nn.Module, step: int) -> str:
        """The first held-out rankings: each completion's rank and score, best rank first."""
        parts = []
        for ranking in self.heldout[: self.config.sample_rankings]:
            scores = score_rows(model, ranking.rows(), self.tokenizer.eot_id)
            parts.append(f"--- {ranking.prompt_id}: ...{self._text(ranking.prompt)[-SAMPLE_CHARS:]}\n")
            for rank, score, completion in sorted(zip(ranking.ranks, scores, ranking.completions, strict=True)):
                parts.append(f"rank {rank} | score {score:+.3f} | {self._text(completion)[:SAMPLE_CHARS]}\n")
        return "".join(parts)

    def _text(self, ids: tuple[int, ...]) -> str:
        return self.tokenizer.decode(list(ids)).replace("\n", " ")

    def data_position(self) -> dict:
        return self.loader.position.to_dict()

    def restore_data_position(self, position: dict) -> None:
        self.loader.restore(DataPosition.from_dict(position))


if __name__ == "__main__":
    main(RewardStage, RewardConfig)
