"""The shared trainer in one process: schedule, gradient accumulation, MFU, and the stage's hooks at work."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fineforge.model.optim import learning_rate
from fineforge.model.pretrain import PretrainConfig, PretrainStage
from fineforge.model.tracking import read_metrics
from fineforge.model.trainer import TrainerConfig, start_training
from testkit.shakespeare import write_shakespeare_shards

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_learning_rate_warms_up_then_decays_to_its_floor():
    config = TrainerConfig(run_dir="r", lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100)
    assert [learning_rate(s, config) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert learning_rate(10, config) == 1.0 and learning_rate(100, config) == learning_rate(500, config) == 0.1
    assert learning_rate(55, config) == pytest.approx(0.55)  # cosine: half-way down at half the decay
    assert learning_rate(32, config) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 22 / 90)))
    linear = TrainerConfig(run_dir="r", lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100, decay="linear")
    assert learning_rate(40, linear) == pytest.approx(0.7)
    constant = TrainerConfig(run_dir="r", lr=1.0, warmup_steps=0, decay="constant", decay_steps=5)
    assert learning_rate(50, constant) == 1.0
    assert learning_rate(40, TrainerConfig(run_dir="r", lr=1.0, min_lr=0.1, warmup_steps=0, decay_steps=20)) == 0.1


@pytest.fixture(scope="module")
def shards(shared_data, tmp_path_factory):
    return write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", tmp_path_factory.mktemp("d"),
                                    limit=50_000)


def train_in_process(shards, run_dir, **fields):
    config = PretrainConfig(
        data_dir=str(shards), run_dir=str(run_dir), model_overrides={"n_layer": 2, "n_head": 2, "n_embd": 32,
        "block_size": 32}, shuffle=False, max_steps=3, warmup_steps=1, eval_every=0, eval_batches=2,
        sample_every=0, sample_tokens=4, checkpoint_every=0, peak_flops=1e9, **fields,
    )  # fmt: skip
    trainer = start_training(PretrainStage(config))
    return trainer, trainer.train()


def test_accumulated_micro_batches_are_one_big_batch(shards, tmp_path):
    """8 sequences in one pass and 2 x 4 sequences with accumulation: the same steps, up to rounding."""
    whole, whole_summary = train_in_process(shards, tmp_path / "whole", micro_batch_size=8)
    parts, parts_summary = train_in_process(shards, tmp_path / "parts", micro_batch_size=4, tokens_per_step=8 * 32)
    assert (whole.plan.micro_steps, parts.plan.micro_steps) == (1, 2)
    assert whole_summary["tokens_per_step"] == parts_summary["tokens_per_step"] == 8 * 32
    for a, b in zip(whole.model.parameters(), parts.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for key in ("train_loss", "grad_norm"):  # the gradient's size too (Adam alone would hide a scale error)
        values = [[r[key] for r in read_metrics(t.run_dir) if r["kind"] == "metrics" and key in r]
                  for t in (whole, parts)]
        assert len(values[0]) == 3 and values[0] == pytest.approx(values[1], rel=1e-4), key
    # MFU: the model's training FLOPs per token x tokens/s over the configured peak (1 GFLOP/s)
    expected = whole.model.flops_per_token() * whole_summary["tokens_per_s"] / 1e9
    assert whole_summary["mfu"] == pytest.approx(expected)
    # at the end: validation loss, samples and the final checkpoint, with the stage's metadata
    assert whole_summary["val_loss"] > 0 and (whole.run_dir / "samples" / "step_00000003.txt").is_file()
    meta = json.loads((whole.run_dir / "checkpoints" / "step_00000003" / "meta.json").read_text())
    assert meta["stage"] == "pretrain" and meta["tokenizer"]["spec"] == "bytes"
    assert meta["data_position"] == {"shard": 0, "offset": 24, "epoch": 0}  # 3 steps x 8 sequences, in order
