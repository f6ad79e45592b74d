"""When a training run folder already holds the run a pipeline asks for, and when it holds another one.

A pipeline records what its training run is made of in `<run_dir>/pipeline_inputs.json`: the trainer's config
and the fingerprint of the token shards. The run is complete for the same inputs when that record matches and
the trainer's `summary.json` reached `max_steps`; the pipeline then skips it. A folder holding checkpoints of a
run on other token shards is refused (resuming would continue that model on other data): the message says to
choose another run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fineforge.model.checkpoint import CHECKPOINTS_SUBDIR
from fineforge.model.trainer import SUMMARY_FILE

INPUTS_FILE = "pipeline_inputs.json"
SAMPLES_DIR = "samples"


class RunDirInUse(RuntimeError):
    """The run folder holds a training run on other data."""


def training_inputs(config: dict[str, Any], tokens_fingerprint: str) -> dict[str, Any]:
    """What decides a pipeline's training run: the trainer's config and the token shards' fingerprint."""
    return json.loads(json.dumps({"config": config, "tokens_fingerprint": tokens_fingerprint}))


def claimed_inputs(run_dir: str | Path) -> dict[str, Any] | None:
    """The inputs a pipeline recorded when it claimed `run_dir` (`claim_run_dir`), else None."""
    path = Path(run_dir) / INPUTS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def completed_training(run_dir: str | Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of the run in `run_dir` if it is complete for `inputs`, else None."""
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY_FILE
    if claimed_inputs(run_dir) != inputs or not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    return summary if summary.get("step", 0) >= inputs["config"]["max_steps"] else None


def claim_run_dir(run_dir: str | Path, inputs: dict[str, Any]) -> None:
    """Record `inputs` in `run_dir`; RunDirInUse if it holds checkpoints of a run on other token shards."""
    run_dir = Path(run_dir)
    recorded = claimed_inputs(run_dir)
    checkpoints = run_dir / CHECKPOINTS_SUBDIR
    has_checkpoints = checkpoints.is_dir() and any(checkpoints.iterdir())
    if has_checkpoints and (recorded or {}).get("tokens_fingerprint") != inputs["tokens_fingerprint"]:
        raise RunDirInUse(f"{run_dir} holds a training run on other token shards: set pretrain.train.run_dir to "
                          "another folder (or remove this one)")
    run_dir.mkdir(parents=True, exist_ok=True)
    staged = run_dir / f".{INPUTS_FILE}.tmp"  # renamed into place: the other nodes never read half a record
    staged.write_text(json.dumps(inputs, indent=2, sort_keys=True))
    staged.replace(run_dir / INPUTS_FILE)


def latest_samples(run_dir: str | Path) -> str | None:
    """The samples the trainer wrote last (`samples/step_NNNNNNNN.txt`), or None."""
    files = sorted((Path(run_dir) / SAMPLES_DIR).glob("step_*.txt"))
    return files[-1].read_text() if files else None
