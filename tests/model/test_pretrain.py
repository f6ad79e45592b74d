"""Pretraining under real torchrun processes: exact resume after SIGKILL, and bad input refused up front."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from fineforge.model.checkpoint import CHECKPOINTS_SUBDIR, MODEL_FILE, CheckpointError, latest_checkpoint, load_model
from fineforge.model.config import ConfigError, load_config
from fineforge.model.pretrain import PretrainConfig, PretrainStage
from fineforge.model.shards import ShardError
from fineforge.model.tracking import read_metrics
from fineforge.model.trainer import check_launch
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command
from testkit.processes import kill_tree
from testkit.shakespeare import write_shakespeare_shards

MAX_STEPS = 24
CHECKPOINT_EVERY = 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory, shared_data) -> Path:
    return write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", tmp_path_factory.mktemp("shards"))


def tiny_config(data_dir: Path, run_dir: Path, **overrides) -> dict:
    """A 2-layer model trained with dropout (so exact resume needs the RNG states) and 2 micro-steps per step."""
    return {
        "data_dir": str(data_dir),
        "run_dir": str(run_dir),
        "model_overrides": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.1},
        "micro_batch_size": 4,
        "tokens_per_step": 4 * 32 * 2 * 2,
        "max_steps": MAX_STEPS,
        "warmup_steps": 4,
        "eval_every": 8,
        "eval_batches": 2,
        "sample_every": 12,
        "sample_tokens": 8,
        "checkpoint_every": CHECKPOINT_EVERY,
        **overrides,
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def launch(config_path: Path, nproc: int = 2) -> list[str]:
    return torchrun_command("fineforge.model.pretrain", config_path, LaunchConfig(nproc_per_node=nproc))


def losses_by_step(records: list[dict], key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in records if r["kind"] == "metrics" and key in r}


def test_sigkilled_run_resumes_exactly(shards, tmp_path):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference_cfg = write_config(tmp_path / "reference.json", tiny_config(shards, reference_dir))
    killed_cfg = write_config(tmp_path / "killed.json", tiny_config(shards, killed_dir))

    run_command(launch(reference_cfg))

    proc = subprocess.Popen(launch(killed_cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while latest_checkpoint(killed_dir / CHECKPOINTS_SUBDIR) is None and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    victims = kill_tree(proc.pid)
    assert proc.wait() == -9 and len(victims) >= 3  # torchrun and both workers
    interrupted = read_metrics(killed_dir)
    assert not any(r["kind"] == "end" for r in interrupted), "the run finished before it was killed"

    run_command(launch(killed_cfg))  # the same command again: resumes from the newest checkpoint

    records = read_metrics(killed_dir)
    starts = [i for i, r in enumerate(records) if r["kind"] == "start"]
    assert len(starts) == 2
    restart = records[starts[-1]]
    assert restart["resumed"] and restart["step"] >= CHECKPOINT_EVERY and restart["step"] % CHECKPOINT_EVERY == 0
    after = records[starts[-1] :]
    reference = read_metrics(reference_dir)
    for key in ("train_loss", "val_loss", "grad_norm"):
        expected = {s: v for s, v in losses_by_step(reference, key).items() if s > restart["step"]}
        assert expected and losses_by_step(after, key) == expected, key
    assert sorted(losses_by_step(after, "train_loss")) == list(range(restart["step"] + 1, MAX_STEPS + 1))

    final_ref = load_file(latest_checkpoint(reference_dir / CHECKPOINTS_SUBDIR) / MODEL_FILE)
    final_resumed = load_file(latest_checkpoint(killed_dir / CHECKPOINTS_SUBDIR) / MODEL_FILE)
    assert all(final_ref[k].equal(final_resumed[k]) for k in final_ref)

    # the inference side reads it back, with the run's tokenizer identity
    model, meta = load_model(reference_dir, device="cpu")
    assert meta["step"] == MAX_STEPS and meta["tokenizer"]["spec"] == "bytes"
    assert model.config.n_layer == 2 and not model.training
    summary = json.loads((reference_dir / "summary.json").read_text())
    assert summary["val_loss"] == losses_by_step(reference, "val_loss")[MAX_STEPS]
    assert (reference_dir / "samples" / f"step_{MAX_STEPS:08d}.txt").read_text().startswith("--- prompt")

    # another model shape in the same run folder is refused before training
    bigger = tiny_config(shards, reference_dir, model_overrides={"n_layer": 3, "n_head": 2, "n_embd": 32,
                                                                 "block_size": 32})
    with pytest.raises(CheckpointError, match="n_layer: checkpoint 2 vs config 3"):
        check_launch(PretrainStage(PretrainConfig(**bigger)), 2)


def test_bad_config_fields_are_named(shards, tmp_path):
    path = write_config(tmp_path / "c.json", {**tiny_config(shards, tmp_path / "run"), "lr": -1.0})
    with pytest.raises(ConfigError, match="field 'lr': must be > 0"):
        load_config(PretrainConfig, path)
    path = write_config(tmp_path / "c.json", {**tiny_config(shards, tmp_path / "run"), "micro_batch_size": "4"})
    with pytest.raises(ConfigError, match="field 'micro_batch_size'"):
        load_config(PretrainConfig, path)
    path = write_config(tmp_path / "c.json", {**tiny_config(shards, tmp_path / "run"), "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match=r"unknown fields \['learning_rate'\]"):
        load_config(PretrainConfig, path)
    path = write_config(tmp_path / "c.json", {**tiny_config(shards, tmp_path / "run"), "model": "gpt5"})
    with pytest.raises(ConfigError, match="unknown model preset 'gpt5'"):
        load_config(PretrainConfig, path)


def test_batch_that_does_not_divide_is_refused(shards, tmp_path):
    config = PretrainConfig(**tiny_config(shards, tmp_path / "run", tokens_per_step=1000))
    with pytest.raises(ConfigError, match=r"'tokens_per_step': 1000 is not a multiple of .* = 128"):
        check_launch(PretrainStage(config), 1)


def _copy_shards(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def check(config: dict) -> None:
    """The checks of the first rank of a node, with shard checksums."""
    check_launch(PretrainStage(PretrainConfig(**config)), 1, verify_data=True)


def test_corrupt_shards_are_refused(shards, tmp_path):
    bad_magic = _copy_shards(shards, tmp_path / "magic")
    blob = bytearray((bad_magic / "train_000000.bin").read_bytes())
    blob[0:4] = (12345).to_bytes(4, "little")
    (bad_magic / "train_000000.bin").write_bytes(bytes(blob))
    with pytest.raises(ShardError, match="wrong magic number 12345"):
        check(tiny_config(bad_magic, tmp_path / "run"))

    truncated = _copy_shards(shards, tmp_path / "truncated")
    shard = truncated / "train_000001.bin"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ShardError, match="truncated or corrupt"):
        check(tiny_config(truncated, tmp_path / "run", verify_shards=False))

    tampered = _copy_shards(shards, tmp_path / "tampered")
    blob = bytearray((tampered / "val_000000.bin").read_bytes())
    blob[-1] ^= 1  # same size and header, different content
    (tampered / "val_000000.bin").write_bytes(bytes(blob))
    with pytest.raises(ShardError, match="sha256 does not match the manifest"):
        check(tiny_config(tampered, tmp_path / "run"))
