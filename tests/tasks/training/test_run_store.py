"""A training run folder in an object store (real S3 server on loopback, real checkpoints): complete checkpoints
only are pulled, pruned ones leave the store, and the pusher pushes a checkpoint saved while it runs."""

import time
from pathlib import Path

import torch

from fineforge.model.checkpoint import META_FILE, list_checkpoints, load_training_state, save_checkpoint
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.optim import adamw
from fineforge.tasks.common.object_store import split_uri
from fineforge.tasks.training.run_store import CheckpointPusher, pull_run, push_run, remote_checkpoints


def tiny_model() -> tuple[GPT, torch.optim.Optimizer, dict]:
    torch.manual_seed(0)
    config = GPTConfig.from_preset("tiny", vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = GPT(config)
    return model, adamw(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu"), {
        "model": config.to_dict()}


def save(run_dir: Path, step: int, keep: int = 2) -> Path:
    model, optimizer, meta = tiny_model()
    return save_checkpoint(run_dir / "checkpoints", step, model, optimizer, meta, keep=keep)


def test_only_complete_checkpoints_are_pulled_and_pruned_ones_leave_the_store(s3_workdir, s3_server, tmp_path):
    uri = f"{s3_workdir}/runs/r1"
    run_dir = tmp_path / "run"
    for step in (1, 2):
        save(run_dir, step)
    (run_dir / "summary.json").write_text('{"step": 2}')
    push_run(run_dir, uri)
    assert remote_checkpoints(uri) == ["step_00000001", "step_00000002"]

    cut = save(tmp_path / "other", 3)  # an upload cut before its meta.json: every file but that one
    bucket, prefix = split_uri(uri)
    for path in cut.iterdir():
        if path.name != META_FILE:
            s3_server.client().put_object(Bucket=bucket, Key=f"{prefix}/checkpoints/{cut.name}/{path.name}",
                                          Body=path.read_bytes())
    elsewhere = tmp_path / "elsewhere"
    assert pull_run(uri, elsewhere) == ["step_00000001", "step_00000002"]
    assert (elsewhere / "summary.json").read_text() == '{"step": 2}'
    model, optimizer, meta = tiny_model()
    newest = list_checkpoints(elsewhere / "checkpoints")[-1]
    assert load_training_state(newest, model, meta["model"], optimizer)["step"] == 2  # each file sha256-checked

    save(run_dir, 4)  # keep=2: step 1 is pruned locally, and so in the store by the next push
    push_run(run_dir, uri)
    assert remote_checkpoints(uri) == ["step_00000002", "step_00000004"]


def test_the_pusher_pushes_a_checkpoint_saved_while_it_runs(s3_workdir, tmp_path):
    uri = f"{s3_workdir}/runs/r2"
    run_dir = tmp_path / "run"
    with CheckpointPusher(run_dir, uri, interval_s=0.2):
        save(run_dir, 5)
        deadline = time.monotonic() + 60
        while remote_checkpoints(uri) != ["step_00000005"]:
            assert time.monotonic() < deadline, "the checkpoint was not pushed while training ran"
            time.sleep(0.1)
