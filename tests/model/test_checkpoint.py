"""Checkpoints: exact round trip, and nothing damaged or crafted is loaded or allocated for."""

from __future__ import annotations

import json
import resource
import shutil
from pathlib import Path

import pytest
import torch

from fineforge.model.checkpoint import (
    META_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    CheckpointError,
    latest_checkpoint,
    load_model,
    load_training_state,
    save_checkpoint,
)
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.optim import adamw

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def trained_tiny() -> tuple[GPT, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny", n_layer=2))
    optimizer = adamw(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    x = torch.randint(0, 266, (2, 16))
    model(x, x)[1].backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, GPT, torch.optim.Optimizer]:
    model, optimizer = trained_tiny()
    root = tmp_path_factory.mktemp("checkpoints")
    path = save_checkpoint(root, 3, model, optimizer, {"model": model.config.to_dict(), "data_position": {"shard": 1}})
    return path, model, optimizer


def damaged_copy(saved_path: Path, tmp_path: Path, change) -> Path:
    """A copy of the checkpoint with `change(copy)` applied."""
    copy = tmp_path / saved_path.name
    shutil.copytree(saved_path, copy)
    change(copy)
    return copy


def edit_meta(**fields):
    def change(copy: Path) -> None:
        meta = json.loads((copy / META_FILE).read_text())
        (copy / META_FILE).write_text(json.dumps({**meta, **fields}))
    return change


def test_round_trip_is_exact(saved, tmp_path):
    path, model, optimizer = saved
    assert latest_checkpoint(path.parent) == path
    loaded, meta = load_model(path.parent)
    assert meta["step"] == 3 and meta["data_position"] == {"shard": 1}
    assert set(meta["files"]) == {MODEL_FILE, OPTIMIZER_FILE, "rng_rank0.json"}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                   strict=True))
    again = save_checkpoint(tmp_path, 4, model, optimizer, {"model": model.config.to_dict()})
    expected_draws = torch.rand(3)  # what the run would have drawn next
    fresh, fresh_optimizer = trained_tiny()  # another process: other weights, moments and RNG state
    load_training_state(again, fresh, model.config.to_dict(), fresh_optimizer)
    state, fresh_state = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert all(torch.equal(state[k]["exp_avg"], fresh_state[k]["exp_avg"]) for k in state)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters(), strict=True))
    assert torch.equal(torch.rand(3), expected_draws)


def test_damaged_weights_are_refused_naming_the_file(saved, tmp_path):
    def zero_100_kb(copy: Path) -> None:
        blob = bytearray((copy / MODEL_FILE).read_bytes())
        blob[len(blob) // 2 : len(blob) // 2 + 100_000] = bytes(100_000)
        (copy / MODEL_FILE).write_bytes(bytes(blob))

    path, model, optimizer = saved
    damaged = damaged_copy(path, tmp_path, zero_100_kb)
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE}: damaged"):
        load_model(damaged)
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE}: damaged"):
        load_training_state(damaged, *trained_tiny()[:1], model.config.to_dict(), trained_tiny()[1])


def test_other_damaged_files_are_refused(saved, tmp_path):
    path, model, _ = saved
    cases = [
        (lambda c: (c / OPTIMIZER_FILE).unlink(), f"{OPTIMIZER_FILE}: missing"),
        (lambda c: (c / "rng_rank0.json").write_text("[]"), "rng_rank0.json: damaged"),
    ]
    for i, (change, message) in enumerate(cases):
        copy = damaged_copy(path, tmp_path / str(i), change)
        fresh, fresh_optimizer = trained_tiny()
        with pytest.raises(CheckpointError, match=message):
            load_training_state(copy, fresh, model.config.to_dict(), fresh_optimizer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (edit_meta(format=1), "checkpoint format 1, this fineforge reads 2 .format 1 carried no checksums"),
        (edit_meta(files={"../model.safetensors": "0"}), "'files' must map the checkpoint's file names"),
        (edit_meta(model={"n_layer": 10**6}), r"GPTConfig.n_layer must be in \[1, 1024\], got 1000000"),
        (edit_meta(model={"n_layer": "2"}), "field 'n_layer': expected int, got '2'"),
        (edit_meta(padding="x" * (1 << 20)), "more than this file can be"),
        (lambda c: (c / META_FILE).write_text("{"), "not JSON"),
    ],
)
def test_untrustworthy_metadata_is_refused(saved, tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        load_model(damaged_copy(saved[0], tmp_path, change))


def test_crafted_metadata_cannot_make_the_loader_allocate(saved, tmp_path):
    """meta.json claiming GPT-2 1.6B (6.4 GB of float32) beside 3 MB of weights: refused before allocating."""
    big = GPTConfig.from_preset("gpt2-1.6b").to_dict()
    crafted = damaged_copy(saved[0], tmp_path, edit_meta(model=big))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.device("meta"):  # shapes only
        needed = GPT(GPTConfig.from_dict(big)).num_parameters()
    with pytest.raises(CheckpointError, match=f"holds 427,904 parameters, the model config in meta.json needs "
                                              f"{needed:,}"):
        load_model(crafted)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing near 6.4 GB
