"""SFT on the shared trainer: the loss reaches only the assistant's tokens, bad starts are refused before launch,
and a SIGKILLed 2-process run under real torchrun resumes exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fineforge.model.checkpoint import (
    CHECKPOINTS_SUBDIR,
    META_FILE,
    MODEL_FILE,
    latest_checkpoint,
    load_model,
    read_meta,
)
from fineforge.model.config import ConfigError
from fineforge.model.sft import SFTConfig, SFTStage
from fineforge.model.shards import ShardError
from fineforge.model.tokenizer import BPETrainingConfig, load_tokenizer, tokenizer_fingerprint, train_bpe
from fineforge.model.tracking import read_metrics
from fineforge.model.trainer import World, check_launch
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.conversations import write_chat_conversations
from testkit.processes import kill_tree

MAX_STEPS = 16
CHECKPOINT_EVERY = 4
SMALL = {"n_layer": 2, "n_head": 2, "n_embd": 32}  # the smallest shape that still runs every part


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory) -> Path:
    return write_chat_conversations(tmp_path_factory.mktemp("conversations"))


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory) -> Path:
    return tiny_bytes_checkpoint(tmp_path_factory.mktemp("pretrained"), block_size=160, **SMALL)


def sft_config(data: Path, init: Path, run_dir: Path, **overrides) -> dict:
    """Dropout on (exact resume needs the RNG states) and 2 micro-steps per optimizer step."""
    return {
        "data_dir": str(data), "init_checkpoint": str(init), "run_dir": str(run_dir), "dropout": 0.1,
        "micro_batch_size": 4, "conversations_per_step": 4 * 2 * 2, "row_multiple": 16, "max_steps": MAX_STEPS,
        "lr": 1e-3, "warmup_steps": 2, "eval_every": 8, "eval_batches": 2, "sample_every": 8, "sample_tokens": 16,
        "sample_prompts": ["Who are you?"], "checkpoint_every": CHECKPOINT_EVERY, "use_mlflow": False, **overrides,
    }  # fmt: skip


def test_loss_reaches_only_the_assistant_tokens(chat_data, init_checkpoint, tmp_path, torch_one_thread):
    stage = SFTStage(SFTConfig(**sft_config(chat_data, init_checkpoint, tmp_path / "run", dropout=0.0)))
    check_launch(stage, 1)
    model = stage.build_model()
    stage.start(World(0, 0, 1, torch.device("cpu"), torch.float32))
    inputs, targets, loss_mask = stage.next_batch()
    logits = []
    model.lm_head.register_forward_hook(lambda _module, _inputs, output: logits.append(output) or output.retain_grad())
    result = stage.loss(model, (inputs, targets, loss_mask))
    result.loss.backward()
    grad = logits[0].grad.abs().sum(-1)  # (B, T): how much each position's prediction is pushed
    trained = loss_mask > 0
    assert trained.any() and (~trained).any()
    assert torch.all(grad[~trained] == 0), "a user, header or padding position reached the loss"
    assert torch.all(grad[trained] > 0)
    # the trained targets are exactly the assistant's contents, each with its <|im_end|>
    tokenizer = load_tokenizer("bytes")
    real = targets[0] != -1
    conversation = tokenizer.decode([inputs[0][0].item(), *targets[0][real].tolist()])
    assistant_turns = conversation.split("<|im_start|>assistant<|im_sep|>")[1:]
    assert assistant_turns
    expected_text = "".join(turn.split("<|im_end|>")[0] + "<|im_end|>" for turn in assistant_turns)
    assert tokenizer.decode(targets[0][trained[0]].tolist()) == expected_text
    expected = torch.nn.functional.cross_entropy(logits[0][trained].detach(), targets[trained])
    assert torch.allclose(result.loss.detach(), expected, atol=1e-6)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def launch(config_path: Path, nproc: int = 2) -> list[str]:
    return torchrun_command("fineforge.model.sft", config_path, LaunchConfig(nproc_per_node=nproc))


def by_step(records: list[dict], key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in records if r["kind"] == "metrics" and key in r}


def test_sigkilled_sft_run_resumes_exactly(chat_data, init_checkpoint, tmp_path):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    run_command(launch(write_config(tmp_path / "reference.json", sft_config(chat_data, init_checkpoint,
                                                                           reference_dir))))
    killed_config = write_config(tmp_path / "killed.json", sft_config(chat_data, init_checkpoint, killed_dir))
    proc = subprocess.Popen(launch(killed_config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while latest_checkpoint(killed_dir / CHECKPOINTS_SUBDIR) is None and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    victims = kill_tree(proc.pid)
    assert proc.wait() == -9 and len(victims) >= 3  # torchrun and both workers
    assert not any(r["kind"] == "end" for r in read_metrics(killed_dir)), "the run finished before it was killed"

    run_command(launch(killed_config))  # the same command again: resumes from the newest checkpoint

    records = read_metrics(killed_dir)
    starts = [i for i, r in enumerate(records) if r["kind"] == "start"]
    restart = records[starts[-1]]
    assert len(starts) == 2 and restart["resumed"] and restart["step"] % CHECKPOINT_EVERY == 0
    reference = read_metrics(reference_dir)
    for key in ("train_loss", "val_loss", "grad_norm"):
        expected = {s: v for s, v in by_step(reference, key).items() if s > restart["step"]}
        assert expected and by_step(records[starts[-1]:], key) == expected, key
    final = [load_file(latest_checkpoint(d / CHECKPOINTS_SUBDIR) / MODEL_FILE) for d in (reference_dir, killed_dir)]
    assert all(final[0][k].equal(final[1][k]) for k in final[0])

    # the checkpoint is a chat model's: stage, tokenizer record, where it started and on what data
    model, meta = load_model(reference_dir)
    assert meta["stage"] == "sft" and meta["step"] == MAX_STEPS and model.config.n_layer == 2
    assert meta["tokenizer"]["fingerprint"] == tokenizer_fingerprint(load_tokenizer("bytes"))
    assert meta["init_checkpoint"]["step"] == 1 and meta["data"]["manifest_sha256"]
    # it is trained, not the starting weights
    start = load_file(latest_checkpoint(init_checkpoint / CHECKPOINTS_SUBDIR) / MODEL_FILE)
    assert not all(start[k].equal(final[0][k]) for k in start)
    summary = json.loads((reference_dir / "summary.json").read_text())
    assert summary["val_loss"] == by_step(reference, "val_loss")[MAX_STEPS] and summary["val_loss"] < by_step(
        reference, "val_loss")[8] + 1.0
    samples = (reference_dir / "samples" / f"step_{MAX_STEPS:08d}.txt").read_text()
    assert samples.startswith("--- user: Who are you?\n")

    # an SFT checkpoint starts another SFT run: its recorded fingerprint matches the data's tokenizer
    check_launch(SFTStage(SFTConfig(**sft_config(chat_data, reference_dir, tmp_path / "second"))), 1)


def refused(config: dict, world_size: int = 1) -> str:
    with pytest.raises((ConfigError, ShardError)) as error:
        check_launch(SFTStage(SFTConfig(**config)), world_size, verify_data=True)
    return str(error.value)


def test_bad_starts_are_refused_before_launch(chat_data, init_checkpoint, tmp_path, shared_data):
    run = tmp_path / "run"
    base = sft_config(chat_data, init_checkpoint, run)

    # conversations of another tokenizer than the checkpoint's
    text = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:20_000]
    bpe = train_bpe([text], tmp_path / "bpe.json", BPETrainingConfig(vocab_size=300))
    other = write_chat_conversations(tmp_path / "bpe-data", tokenizer=bpe.name)
    message = refused({**base, "data_dir": str(other)})
    assert "'init_checkpoint'/'data_dir'" in message and "tokenizer 'bytes' (266 ids)" in message
    assert "build the conversations with the checkpoint's tokenizer" in message

    # a model whose embedding stops before the chat tokens
    short = tiny_bytes_checkpoint(tmp_path / "short-vocab", block_size=160, vocab_size=257, **SMALL)
    message = refused({**base, "init_checkpoint": str(short)})
    assert "'init_checkpoint'" in message and "the model embeds 257 ids" in message
    assert "pretrain with the vocabulary padded to cover the whole tokenizer" in message

    # conversations longer than the model's context
    narrow = tiny_bytes_checkpoint(tmp_path / "narrow", block_size=64, **SMALL)
    message = refused({**base, "init_checkpoint": str(narrow)})
    assert "train split" in message and "more than seq_len 64 + 1" in message

    # not a language model's checkpoint, none at all, or the run's own folder
    reward = tmp_path / "reward"
    shutil.copytree(init_checkpoint, reward)
    meta_path = latest_checkpoint(reward / CHECKPOINTS_SUBDIR) / META_FILE
    meta_path.write_text(json.dumps({**read_meta(meta_path.parent), "stage": "reward"}))
    assert "is a 'reward' checkpoint, not a language model" in refused({**base, "init_checkpoint": str(reward)})
    assert "no checkpoint found" in refused({**base, "init_checkpoint": str(tmp_path / "none")})
    assert "must lie outside run_dir" in refused({**base, "init_checkpoint": str(run / "checkpoints")})

    # batch arithmetic and fields
    message = refused({**base, "conversations_per_step": 12}, world_size=2)
    assert "'conversations_per_step': 12 is not a multiple of micro_batch_size x world_size = 4 x 2 = 8" in message
    assert "field 'dropout': must be in [0, 1)" in refused({**base, "dropout": 1.5})
    assert not run.exists()  # nothing was written
