"""Training checkpoints: safetensors + JSON only, written atomically, never unpickled.

A checkpoint is a folder `<checkpoints>/step_NNNNNNNN/` holding
- `model.safetensors`: the weights (tied tensors stored once);
- `optimizer.safetensors`: the optimizer's tensor state, its parameter groups and scalars as JSON metadata;
- `rng_rank{R}.json`: each rank's torch (CPU, CUDA), numpy and python RNG states;
- `meta.json` (written last): step, model config, training config, tokenizer identity, data position.
Every rank writes its RNG file into a hidden temporary folder that rank 0 renames into place when complete,
so a folder named `step_*` is always a whole checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_model as load_weights
from safetensors.torch import save_file, save_model

from fineforge.model.gpt import GPT, GPTConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
META_FILE = "meta.json"
RNG_FILE = "rng_rank{rank}.json"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
CHECKPOINTS_SUBDIR = "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or does not fit the model it is loaded into."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rng_state() -> dict:
    """This process's RNG states as plain JSON values."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_internal, py_gauss = random.getstate()
    cuda = [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state().tolist(),
        "cuda": cuda,
        "numpy": {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}},
        "python": [py_version, list(py_internal), py_gauss],
    }


def set_rng_state(state: dict) -> None:
    """Restore RNG states saved by `rng_state`."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    np_state = state["numpy"]
    key = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state({**np_state, "state": {**np_state["state"], "key": key}})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _optimizer_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split an optimizer state dict into named tensors and JSON metadata (no pickling)."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    metadata = {"param_groups": json.dumps(state_dict["param_groups"]), "scalars": json.dumps(scalars)}
    return tensors, metadata


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    state: dict[int, dict[str, Any]] = {}
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        for key in f.keys():
            param_id, name = key.split(".", 1)
            state.setdefault(int(param_id), {})[name] = f.get_tensor(key)
    for param_id, values in json.loads(metadata["scalars"]).items():
        state.setdefault(int(param_id), {}).update(values)
    groups = json.loads(metadata["param_groups"])
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except ValueError as exc:
        raise CheckpointError(f"{path}: optimizer state does not fit this model's parameters: {exc}") from exc


def save_checkpoint(
    checkpoints_dir: str | Path,
    step: int,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    meta: dict,
    rank: int = 0,
    keep: int | None = None,
) -> Path:
    """Write a whole checkpoint atomically; call on every rank (each saves its RNG state). Returns its folder.

    `meta` must hold "model" (the GPTConfig as a dict); step and time are added. With `keep`, only the
    newest `keep` checkpoints remain.
    """
    checkpoints_dir = Path(checkpoints_dir)
    final = checkpoints_dir / checkpoint_name(step)
    tmp = checkpoints_dir / f".{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    (tmp / RNG_FILE.format(rank=rank)).write_text(json.dumps(rng_state()))
    _barrier()
    if rank == 0:
        save_model(model, str(tmp / MODEL_FILE), metadata={"step": str(step)})
        tensors, metadata = _optimizer_files(optimizer)
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata=metadata)
        meta = {**meta, "format": FORMAT_VERSION, "step": step, "time": time.time()}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        log.info("checkpoint saved: %s", final)
        if keep:
            for old in list_checkpoints(checkpoints_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def list_checkpoints(checkpoints_dir: str | Path) -> list[Path]:
    """Complete checkpoints in a folder, oldest first."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in checkpoints_dir.iterdir()
        if (m := CHECKPOINT_PATTERN.match(p.name)) and (p / META_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in a folder, or None."""
    found = list_checkpoints(checkpoints_dir)
    return found[-1] if found else None


def read_meta(checkpoint: str | Path) -> dict:
    """A checkpoint's metadata (JSON), checked for completeness."""
    path = Path(checkpoint) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{checkpoint}: not a checkpoint (no {META_FILE})")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT_VERSION or "model" not in meta:
        raise CheckpointError(f"{checkpoint}: unknown checkpoint format {meta.get('format')!r}")
    return meta


def check_model_config(checkpoint: str | Path, meta: dict, config: GPTConfig) -> None:
    """Fail clearly when a checkpoint was written for another model shape."""
    saved = GPTConfig.from_dict(meta["model"]).to_dict()
    wanted = config.to_dict()
    diff = {k: (saved[k], wanted[k]) for k in wanted if saved.get(k) != wanted[k]}
    if diff:
        details = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{checkpoint} holds another model shape ({details})")


def load_weights_into(model: GPT, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
    """Load a checkpoint's weights into a model of the same shape."""
    try:
        load_weights(model, str(Path(checkpoint) / MODEL_FILE), strict=True, device=str(device))
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the model: {exc}") from exc


def load_training_state(
    checkpoint: str | Path, model: GPT, optimizer: torch.optim.Optimizer, rank: int = 0
) -> dict:
    """Restore weights, optimizer state and this rank's RNG states; return the metadata.

    A rank without a saved RNG file (the world grew) keeps its fresh seeds.
    """
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    check_model_config(checkpoint, meta, model.config)
    load_weights_into(model, checkpoint, next(model.parameters()).device)
    _load_optimizer(optimizer, checkpoint / OPTIMIZER_FILE)
    rng_path = checkpoint / RNG_FILE.format(rank=rank)
    if rng_path.is_file():
        set_rng_state(json.loads(rng_path.read_text()))
    else:
        log.warning("%s: no RNG state for rank %d; keeping fresh seeds", checkpoint, rank)
    return meta


def find_checkpoint(checkpoint_dir: str | Path) -> Path:
    """The checkpoint folder meant by a checkpoint folder, a folder of them, or a run folder (the newest)."""
    path = Path(checkpoint_dir)
    if (path / META_FILE).is_file():
        return path
    found = latest_checkpoint(path) or latest_checkpoint(path / CHECKPOINTS_SUBDIR)
    if found is None:
        raise CheckpointError(f"{checkpoint_dir}: no checkpoint found")
    return found


def load_model(checkpoint_dir: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    """A GPT in eval mode and its checkpoint metadata, from a checkpoint folder, a folder of them, or a run
    folder (the newest checkpoint is taken)."""
    path = find_checkpoint(checkpoint_dir)
    meta = read_meta(path)
    model = GPT(GPTConfig.from_dict(meta["model"]))
    load_weights_into(model, path)
    return model.to(device).eval(), meta
