"""Training checkpoints: safetensors + JSON only, written atomically, never unpickled.

A checkpoint is a folder `<checkpoints>/step_NNNNNNNN/` holding
- `model.safetensors`: the weights (tied tensors stored once);
- `optimizer.safetensors`: the optimizer's tensor state, its parameter groups and scalars as JSON metadata;
- `rng_rank{R}.json`: each rank's torch (CPU, CUDA), numpy and python RNG states;
- `meta.json` (written last): step, model config, training config, tokenizer identity, data position, and
  the sha256 of every other file of the checkpoint.
Every rank writes its RNG file into a hidden temporary folder that rank 0 renames into place when complete,
so a folder named `step_*` is always a whole checkpoint.

Loading trusts nothing it has not checked: `meta.json` is size-limited, its model config range-checked
and its parameter count compared with the tensors that the weight file's header lists, all before any
model is allocated; every file is verified against its sha256 before it is read.
"""

from __future__ import annotations

import json
import logging
import math
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
from fineforge.model.shards import file_sha256, read_bounded_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: meta.json holds the sha256 of every file
MAX_META_BYTES = 1 << 20  # metadata is a few KB; a larger file is not one of ours
MAX_RNG_BYTES = 4 << 20
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
META_FILE = "meta.json"
RNG_FILE = "rng_rank{rank}.json"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
CHECKPOINTS_SUBDIR = "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, damaged, or does not fit the model it is loaded into."""


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

    `meta` must hold "model" (the model's shape as a dict); step, time and every file's sha256 are added.
    With `keep`, only the newest `keep` checkpoints remain.
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
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        meta = {**meta, "format": FORMAT_VERSION, "step": step, "time": time.time(), "files": files}
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
    """A checkpoint's metadata (JSON, size-limited), checked for the fields loading relies on."""
    path = Path(checkpoint) / META_FILE
    meta = read_bounded_json(path, MAX_META_BYTES, CheckpointError, f"{checkpoint}: not a checkpoint (no {META_FILE})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{checkpoint}: checkpoint format {found!r}, this fineforge reads {FORMAT_VERSION} "
                              "(format 1 carried no checksums)")
    files = meta.get("files")
    if not isinstance(meta.get("model"), dict) or not isinstance(meta.get("step"), int):
        raise CheckpointError(f"{path}: needs the fields 'model' (an object) and 'step' (an integer)")
    if not isinstance(files, dict) or MODEL_FILE not in files or not all(
        isinstance(v, str) and Path(k).name == k for k, v in files.items()
    ):
        raise CheckpointError(f"{path}: 'files' must map the checkpoint's file names (with {MODEL_FILE}) to sha256")
    return meta


def verify_file(checkpoint: str | Path, meta: dict, name: str) -> Path:
    """The path of one file of the checkpoint, after checking it against the sha256 in its metadata."""
    path = Path(checkpoint) / name
    expected = meta["files"].get(name)
    if expected is None:
        raise CheckpointError(f"{path}: not listed in {META_FILE}")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if file_sha256(path) != expected:
        raise CheckpointError(f"{path}: damaged (its sha256 does not match {META_FILE})")
    return path


def model_config(checkpoint: str | Path, meta: dict) -> GPTConfig:
    """The GPT shape in a checkpoint's metadata, range-checked, without allocating anything."""
    try:
        return GPTConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint}: model config in {META_FILE} refused: {exc}") from exc


def check_same_model(checkpoint: str | Path, meta: dict, wanted: dict) -> None:
    """Fail clearly when a checkpoint was written for another model shape than `wanted` (a model config dict)."""
    saved = meta["model"]
    diff = {k: (saved.get(k), wanted.get(k)) for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)}
    if diff:
        details = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{checkpoint} holds another model shape ({details})")


def stored_parameters(weights: Path) -> int:
    """How many numbers a safetensors file holds, from its header alone."""
    try:
        with safe_open(weights, framework="pt") as f:
            return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    except Exception as exc:  # safetensors raises its own error type for a malformed header
        raise CheckpointError(f"{weights}: not a safetensors file ({exc})") from exc


def load_weights_into(model: GPT, checkpoint: str | Path, meta: dict, device: str | torch.device = "cpu") -> None:
    """Load a checkpoint's verified weights into a model of the same shape."""
    weights = verify_file(checkpoint, meta, MODEL_FILE)
    try:
        load_weights(model, str(weights), strict=True, device=str(device))
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the model: {exc}") from exc


def load_training_state(
    checkpoint: str | Path, model: torch.nn.Module, model_shape: dict, optimizer: torch.optim.Optimizer, rank: int = 0
) -> dict:
    """Restore weights, optimizer state and this rank's RNG states, each verified; return the metadata.

    `model_shape` is the model's config as a dict, compared with the checkpoint's. A rank without a saved
    RNG file (the world grew) keeps its fresh seeds.
    """
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    check_same_model(checkpoint, meta, model_shape)
    load_weights_into(model, checkpoint, meta, next(model.parameters()).device)
    _load_optimizer(optimizer, verify_file(checkpoint, meta, OPTIMIZER_FILE))
    rng_name = RNG_FILE.format(rank=rank)
    if rng_name in meta["files"]:
        rng_path = verify_file(checkpoint, meta, rng_name)
        if rng_path.stat().st_size > MAX_RNG_BYTES:
            raise CheckpointError(f"{rng_path}: larger than an RNG state can be ({MAX_RNG_BYTES} bytes)")
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
    config = model_config(path, meta)
    weights = verify_file(path, meta, MODEL_FILE)
    stored, expected = stored_parameters(weights), config.num_parameters()
    if stored != expected:  # checked before allocating: the metadata cannot make us allocate more than the file
        raise CheckpointError(f"{weights}: holds {stored:,} parameters, the model config in {META_FILE} "
                              f"needs {expected:,}")
    model = GPT(config)
    load_weights_into(model, path, meta)
    return model.to(device).eval(), meta
