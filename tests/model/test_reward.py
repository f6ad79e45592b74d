"""The reward-model stage under real torchrun processes: it learns a known rule, resumes exactly after SIGKILL,
and refuses before launch a preference set or policy of another tokenizer, rows beyond the context, a reward
model as the trunk and damaged data."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from fineforge.model.chat import ChatTemplate
from fineforge.model.checkpoint import CHECKPOINTS_SUBDIR, MODEL_FILE, CheckpointError, latest_checkpoint
from fineforge.model.config import ConfigError
from fineforge.model.preference_data import (
    PreferenceDataError,
    RankingLoader,
    TokenizedRanking,
    collate,
    load_preference_manifest,
    read_split,
)
from fineforge.model.reward import RewardConfig, RewardStage
from fineforge.model.reward_model import load_reward_model, require_same_tokenizer, score_rows
from fineforge.model.tokenizer import load_tokenizer
from fineforge.model.tracking import read_metrics
from fineforge.model.trainer import check_launch
from fineforge.tasks.preferences.pairs import PairsConfig, build_preference_set
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command
from testkit.preferences import untrained_checkpoint, write_rule_rankings
from testkit.processes import kill_tree

MAX_STEPS = 24
CHECKPOINT_EVERY = 4
BLOCK_SIZE = 96


@pytest.fixture(scope="module")
def trunk(tmp_path_factory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("trunk"), block_size=BLOCK_SIZE, n_layer=1, n_embd=32)


@pytest.fixture(scope="module")
def keyword_set(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("keyword")
    rankings = write_rule_rankings(work / "rankings.jsonl", "keyword", 240)
    config = PairsConfig(rankings=str(rankings), output=str(work / "set"), tokenizer="bytes", max_length=BLOCK_SIZE,
                         heldout_fraction=0.2)
    build_preference_set(config, load_tokenizer("bytes"))
    return work / "set"


def stage_config(data: Path, trunk: Path, run_dir: Path, **overrides) -> dict:
    """Dropout in the trunk (exact resume needs the RNG states), 2 micro-steps per step, evaluation on 2 ranks."""
    return {
        "data_dir": str(data), "init_checkpoint": str(trunk), "run_dir": str(run_dir), "dropout": 0.1,
        "micro_batch_size": 4, "rankings_per_step": 16, "max_steps": MAX_STEPS, "lr": 3e-3, "min_lr": 3e-4,
        "warmup_steps": 2, "eval_every": 12, "sample_every": MAX_STEPS, "checkpoint_every": CHECKPOINT_EVERY,
        "centering": 0.01, "margin": 0.1, "use_mlflow": False, **overrides,
    }  # fmt: skip


def launch(tmp_path: Path, name: str, config: dict) -> list[str]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return torchrun_command("fineforge.model.reward", path, LaunchConfig(nproc_per_node=2))


def by_step(records: list[dict], key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in records if r["kind"] == "metrics" and key in r}


@pytest.fixture(scope="module")
def reference_dir(trunk, keyword_set, tmp_path_factory) -> Path:
    """A whole reward-model run on the keyword rule, on 2 processes."""
    work = tmp_path_factory.mktemp("reference")
    run_command(launch(work, "reference", stage_config(keyword_set, trunk, work / "run")))
    return work / "run"


def test_learns_a_known_rule_and_resumes_exactly_after_sigkill(trunk, keyword_set, reference_dir, tmp_path):
    killed_dir = tmp_path / "killed"
    killed_command = launch(tmp_path, "killed", stage_config(keyword_set, trunk, killed_dir))
    proc = subprocess.Popen(killed_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while latest_checkpoint(killed_dir / CHECKPOINTS_SUBDIR) is None and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    assert len(kill_tree(proc.pid)) >= 3 and proc.wait() == -9  # torchrun and both workers
    assert not any(r["kind"] == "end" for r in read_metrics(killed_dir)), "the run finished before it was killed"
    run_command(killed_command)  # the same command again: resumes from the newest checkpoint

    reference, records = read_metrics(reference_dir), read_metrics(killed_dir)
    starts = [i for i, r in enumerate(records) if r["kind"] == "start"]
    restart = records[starts[-1]]
    assert len(starts) == 2 and restart["resumed"] and restart["step"] % CHECKPOINT_EVERY == 0
    for key in ("train_loss", "grad_norm", "heldout_accuracy", "heldout_margin", "heldout_loss"):
        expected = {s: v for s, v in by_step(reference, key).items() if s > restart["step"]}
        assert expected and by_step(records[starts[-1] :], key) == expected, key
    final = [load_file(latest_checkpoint(d / CHECKPOINTS_SUBDIR) / MODEL_FILE) for d in (reference_dir, killed_dir)]
    assert all(final[0][k].equal(final[1][k]) for k in final[0])

    # it learned the rule: chance is 0.5 on the held-out pairs (0.86 here after 24 steps)
    summary = json.loads((reference_dir / "summary.json").read_text())
    assert summary["heldout_accuracy"] >= 0.75 and summary["heldout_margin"] > 0.5
    heldout_losses = by_step(reference, "heldout_loss")
    assert heldout_losses[MAX_STEPS] < heldout_losses[MAX_STEPS // 2]
    assert by_step(reference, "heldout_accuracy")[MAX_STEPS] == summary["heldout_accuracy"]
    samples = (reference_dir / "samples" / f"step_{MAX_STEPS:08d}.txt").read_text()
    assert samples.startswith("--- kw-") and "rank 0 | score" in samples

    # the checkpoint is a reward model that records its tokenizer, and scores as the evaluation did
    model, meta = load_reward_model(reference_dir)
    assert meta["stage"] == "reward" and meta["reward"]["init_checkpoint"].startswith(str(trunk))
    tokenizer = load_tokenizer("bytes")
    require_same_tokenizer(meta, tokenizer, "the policy")
    heldout = read_split(keyword_set, load_preference_manifest(keyword_set), "heldout")
    right = total = 0
    for ranking in heldout:
        scores = score_rows(model, ranking.rows(), tokenizer.eot_id)
        pairs = [(a, b) for a in range(len(scores)) for b in range(len(scores)) if ranking.ranks[a] < ranking.ranks[b]]
        right += sum(scores[a] > scores[b] for a, b in pairs)
        total += len(pairs)
    assert right / total == pytest.approx(summary["heldout_accuracy"], abs=1e-6)


def test_batches_are_whole_rankings_with_their_pairs():
    three = TokenizedRanking("p", (1, 2), ("a", "b", "c"), ((7, 9), (8, 8, 8, 9), (9,)), (2, 0, 1))
    two = TokenizedRanking("q", (3,), ("x", "y"), ((4, 9), (5, 9)), (0, 1))
    batch = collate([three, two], pad_id=0)
    assert batch.tokens.tolist() == [[1, 2, 7, 9, 0, 0], [1, 2, 8, 8, 8, 9], [1, 2, 9, 0, 0, 0], [3, 4, 9, 0, 0, 0],
                                     [3, 5, 9, 0, 0, 0]]
    assert batch.lengths.tolist() == [4, 6, 3, 3, 3]
    # all pairs, better first: b > c, b > a, c > a, then x > y (rows 3 and 4)
    assert list(zip(batch.chosen.tolist(), batch.rejected.tolist(), batch.rank_gaps.tolist(), strict=True)) == [
        (1, 2, 1), (1, 0, 2), (2, 0, 1), (3, 4, 1)]
    best_worst = collate([three, two], pad_id=0, pairing="best_worst")
    assert list(zip(best_worst.chosen.tolist(), best_worst.rejected.tolist(), strict=True)) == [(1, 0), (3, 4)]

    # two ranks take disjoint halves of each micro-step; a new epoch is a new order
    rankings = [TokenizedRanking(str(i), (1,), ("a", "b"), ((9,), (9,)), (0, 1)) for i in range(10)]
    ranks = [RankingLoader(rankings, 2, rank, 2, seed=3) for rank in (0, 1)]
    epoch = [[r.prompt_id for loader in ranks for r in loader.next_rankings()] for _ in range(2)]
    assert len({i for step in epoch for i in step}) == 8  # 2 steps of 4; the remainder of 2 is skipped
    ranks[0].next_rankings()
    assert ranks[0].position.to_dict() == {"shard": 0, "offset": 4, "epoch": 1}


def build_set(rankings: Path, output: Path, tokenizer: str, max_length: int, vocab_dir: Path | None = None) -> Path:
    config = PairsConfig(rankings=str(rankings), output=str(output), tokenizer=tokenizer, max_length=max_length,
                         heldout_fraction=0.2)
    build_preference_set(config, load_tokenizer(tokenizer, vocab_dir))
    return output


def check(data: Path, trunk: Path, run_dir: Path, world_size: int = 1, **overrides) -> None:
    check_launch(RewardStage(RewardConfig(**stage_config(data, trunk, run_dir, **overrides))), world_size, True)


def test_bad_input_is_refused_before_launch(trunk, keyword_set, shared_data, tmp_path):
    rankings = write_rule_rankings(tmp_path / "rankings.jsonl", "keyword", 60)
    run_dir = tmp_path / "run"
    check(keyword_set, trunk, run_dir)  # the good case passes

    gpt2_set = build_set(rankings, tmp_path / "gpt2", "gpt2", BLOCK_SIZE, shared_data / "tokenizers")
    with pytest.raises(ConfigError, match=r"'data_dir': .* was tokenized with 'gpt2' \(50266 ids\), the checkpoint "
                                          r".* uses 'bytes' \(266 ids\)"):
        check(gpt2_set, trunk, run_dir)
    long_set = build_set(rankings, tmp_path / "long", "bytes", 4 * BLOCK_SIZE)
    with pytest.raises(ConfigError, match=rf"rows of up to \d+ tokens, more than the model's context of {BLOCK_SIZE}"):
        check(long_set, trunk, run_dir)
    with pytest.raises(ConfigError, match="'micro_batch_size': .* fewer than micro_batch_size x world_size = 4 x 64"):
        check(keyword_set, trunk, run_dir, world_size=64, rankings_per_step=None)
    with pytest.raises(ConfigError, match="'rankings_per_step': 16 is not a multiple of .* = 4 x 3 = 12"):
        check(keyword_set, trunk, run_dir, world_size=3)
    with pytest.raises(ConfigError, match="field 'pairing': must be one of"):
        check(keyword_set, trunk, run_dir, pairing="random")
    with pytest.raises(ConfigError, match="'init_checkpoint': .* no checkpoint found"):
        check(keyword_set, tmp_path / "nowhere", run_dir)

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in keyword_set.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    with open(damaged / "train.jsonl", "a") as f:
        f.write("{}\n")
    with pytest.raises(PreferenceDataError, match="train.jsonl: sha256 does not match the manifest"):
        check(damaged, trunk, run_dir)
    with pytest.raises(PreferenceDataError, match=r"train.jsonl line \d+: 'prompt_id'"):
        read_split(damaged, load_preference_manifest(damaged, verify=False), "train")


def test_reward_checkpoints_are_refused_as_trunk_and_by_a_policy_of_another_tokenizer(
    trunk, keyword_set, reference_dir, tmp_path, shared_data
):
    run_dir = reference_dir
    with pytest.raises(ConfigError, match="'init_checkpoint': .* is a reward model; start from the SFT"):
        check(keyword_set, run_dir, tmp_path / "again")
    _, meta = load_reward_model(run_dir)
    policy_tokenizer = load_tokenizer("gpt2", shared_data / "tokenizers")
    with pytest.raises(CheckpointError, match=r"reads tokenizer 'bytes' \(266 ids\), the policy uses 'gpt2'"):
        require_same_tokenizer(meta, policy_tokenizer, "the policy")
    with pytest.raises(CheckpointError, match="a pretrain checkpoint, not a reward model"):
        load_reward_model(trunk)
    # its scores are read at each reply's end: a longer pad never changes them
    model, _ = load_reward_model(run_dir)
    template = ChatTemplate(load_tokenizer("bytes"))
    row = template.render_prompt([{"role": "user", "content": "hi"}]) + template.tokenizer.encode("Gladly.") + [
        template.special["<|im_end|>"]]
    alone = score_rows(model, [row], template.tokenizer.eot_id)
    padded = score_rows(model, [row, row + row[:10]], template.tokenizer.eot_id)
    assert alone[0] == pytest.approx(padded[0], abs=1e-5) and isinstance(alone[0], float)
