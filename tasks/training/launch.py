"""Launch a `model.<stage>` training module under torchrun as a subprocess, streaming its log.

Single node by default (`--standalone --nproc-per-node N`); multi-node launcher arguments (`--nnodes`,
`--node-rank`, `--rdzv-endpoint`, ...) replace `--standalone`. A nonzero exit is a `TorchrunError`; it is
`refused` when a worker said that the job cannot start as configured (the trainer's REFUSED_MARK line),
which a retry would only repeat. No Prefect here: the CLI checks a LaunchConfig before Prefect starts.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from fineforge.model.trainer import REFUSED_MARK

log = logging.getLogger(__name__)

TAIL_LINES = 40  # log lines quoted in the error of a failed run
# The last line of a Python traceback ("ConfigError: ..."); torchrun's own summary error is not the cause.
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): \S")
LAUNCHER_ERRORS = ("ChildFailedError", "SignalException")
NNODES = re.compile(r"^--nnodes(?:=(.*))?$")


class TorchrunError(RuntimeError):
    """torchrun exited with a nonzero status; `refused`: a worker refused the job before training."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def node_count(launcher_args: list[str]) -> int:
    """The fixed number of nodes that `--nnodes N` (or `N:N`) names; 1 without it."""
    for i, arg in enumerate(launcher_args):
        if match := NNODES.match(arg):
            following = launcher_args[i + 1] if i + 1 < len(launcher_args) else ""
            value = match.group(1) if match.group(1) is not None else following
            low, _, high = value.partition(":")
            if not low.isdigit() or (high and high != low) or int(low) < 1:
                raise ValueError(f"--nnodes {value!r}: give a fixed number of nodes (the batch arithmetic "
                                 "of a run depends on its world size)")
            return int(low)
    return 1


class LaunchConfig(BaseModel):
    """How torchrun starts the worker processes."""

    nproc_per_node: int = Field(1, ge=1, description="Worker processes on this node (one per GPU).")
    launcher_args: list[str] = Field(
        default_factory=list,
        description="torchrun arguments for multi-node runs (e.g. --nnodes 2 --node-rank 0 --rdzv-backend c10d "
        "--rdzv-endpoint host:29400 --rdzv-id run1); they replace --standalone.",
    )
    retries: int = Field(2, ge=0, description="Relaunches after a failure; each resumes from the newest checkpoint.")

    @field_validator("launcher_args")
    @classmethod
    def _fixed_nodes(cls, value: list[str]) -> list[str]:
        node_count(value)
        return value

    @property
    def world_size(self) -> int:
        """Worker processes over all nodes."""
        return self.nproc_per_node * node_count(self.launcher_args)


def torchrun_command(module: str, config_path: str | Path, launch: LaunchConfig) -> list[str]:
    """The torchrun command line that runs `python -m <module> --config <config_path>` on every rank."""
    node = launch.launcher_args or ["--standalone"]
    return [
        sys.executable, "-m", "torch.distributed.run", *node, "--nproc-per-node", str(launch.nproc_per_node),
        "-m", module, "--config", str(config_path),
    ]  # fmt: skip


def run_command(command: list[str], env: dict[str, str] | None = None, logger: logging.Logger | None = None) -> None:
    """Run a command in its own process group, log each output line, raise TorchrunError on a nonzero exit.

    If this process is interrupted, the whole group (torchrun and its workers) is terminated.
    """
    logger = logger or log
    logger.info("launching: %s", " ".join(command))
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    cause = refusal = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        env={**os.environ, **(env or {})}, start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                if REFUSED_MARK in line:
                    refusal = line.split(REFUSED_MARK, 1)[1]
                elif EXCEPTION_LINE.match(line) and not any(name in line for name in LAUNCHER_ERRORS):
                    cause = line
                logger.info("%s", line)
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            raise
    if code == 0:
        return
    if refusal is not None:
        raise TorchrunError(f"training refused: {refusal}", refused=True)
    reason = f": {cause}" if cause else ""
    raise TorchrunError(f"torchrun exited with status {code}{reason}\nlast lines:\n" + "\n".join(tail))
