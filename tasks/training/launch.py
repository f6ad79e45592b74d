"""Launch a `fineforge.model.<stage>` training module under torchrun as a subprocess, streaming its log.

Single node by default (`--standalone --nproc-per-node N`). Several nodes: every node runs the same
command with its own `node_rank` and the same rendezvous (`rdzv_endpoint`, `rdzv_id`); node 0 runs the
Prefect flow, the other nodes run only the torchrun command line. Global rank 0, wherever the rendezvous
puts it, is the only process that tracks (its MLflow run id is kept in the shared run dir). A nonzero exit
is a `TorchrunError`; it is `refused` when a worker said that the job cannot start as configured (the
trainer's REFUSED_MARK line), which a retry would only repeat. No Prefect here: the CLI checks a
LaunchConfig before Prefect starts.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from fineforge.model.trainer import REFUSED_MARK
from fineforge.tasks.common.watchdog import guard

log = logging.getLogger(__name__)

TAIL_LINES = 40  # log lines quoted in the error of a failed run
# The last line of a Python traceback ("ConfigError: ..."); torchrun's own summary error is not the cause.
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): \S")
LAUNCHER_ERRORS = ("ChildFailedError", "SignalException")


class TorchrunError(RuntimeError):
    """torchrun exited with a nonzero status; `refused`: a worker refused the job before training."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


# torchrun flags that set the node layout: they are LaunchConfig fields, never raw launcher arguments.
NODE_LAYOUT_FLAGS = ("--standalone", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id", "--rdzv-backend",
                     "--nproc-per-node", "--master-addr", "--master-port")  # fmt: skip


class LaunchConfig(BaseModel):
    """How torchrun starts the worker processes: this node's processes and, for several nodes, the rendezvous."""

    model_config = ConfigDict(extra="forbid")

    nproc_per_node: int = Field(1, ge=1, description="Worker processes on this node (one per GPU).")
    nnodes: int = Field(1, ge=1, description="Nodes of the run; more than one needs rdzv_endpoint.")
    node_rank: int = Field(0, ge=0, description="This node's index; node 0 runs the flow and opens the MLflow run.")
    rdzv_endpoint: str | None = Field(
        None, validate_default=True,
        description="host:port of the rendezvous store, served by the node that hosts it (e.g. node0:29400).",
    )  # fmt: skip
    rdzv_id: str = Field("fineforge", min_length=1, description="Id shared by the nodes of one run, new per run.")
    rdzv_backend: Literal["c10d", "static"] = Field(
        "c10d",
        description="c10d: ranks assigned at rendezvous (global rank 0, the one that tracks, may be on any node); "
        "static: global rank 0 is on node 0.",
    )
    launcher_args: list[str] = Field(
        default_factory=list,
        description="Further torchrun arguments (e.g. --max-restarts 3); the node layout has its own fields.",
    )
    retries: int = Field(2, ge=0, description="Relaunches after a failure; each resumes from the newest checkpoint.")

    @field_validator("node_rank")
    @classmethod
    def _node_rank_below_nnodes(cls, value: int, info: ValidationInfo) -> int:
        nnodes = info.data.get("nnodes", 1)
        if value >= nnodes:
            raise ValueError(f"must be below nnodes ({nnodes})")
        return value

    @field_validator("rdzv_endpoint")
    @classmethod
    def _endpoint_for_several_nodes(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("nnodes", 1) > 1:
                raise ValueError("required when nnodes > 1 (host:port of the rendezvous)")
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @field_validator("launcher_args")
    @classmethod
    def _no_layout_flags(cls, value: list[str]) -> list[str]:
        for argument in value:
            flag = argument.split("=", 1)[0].replace("_", "-")  # torchrun takes both spellings
            if flag in NODE_LAYOUT_FLAGS:
                raise ValueError(f"{flag} is set by the fields nproc_per_node, nnodes, node_rank and rdzv_*")
        return value

    @property
    def world_size(self) -> int:
        """Worker processes over all nodes."""
        return self.nproc_per_node * self.nnodes

    @property
    def standalone(self) -> bool:
        """One node with a private rendezvous (torchrun --standalone)."""
        return self.nnodes == 1 and self.rdzv_endpoint is None


def node_arguments(launch: LaunchConfig) -> list[str]:
    """torchrun's node layout arguments: --standalone, or the rendezvous of several nodes."""
    if launch.standalone:
        return ["--standalone"]
    return [
        "--nnodes", str(launch.nnodes), "--node-rank", str(launch.node_rank), "--rdzv-backend", launch.rdzv_backend,
        "--rdzv-endpoint", launch.rdzv_endpoint, "--rdzv-id", launch.rdzv_id,
    ]  # fmt: skip


def torchrun_command(module: str, config_path: str | Path, launch: LaunchConfig) -> list[str]:
    """The torchrun command line that runs `python -m <module> --config <config_path>` on every rank of this node."""
    return [
        sys.executable, "-m", "torch.distributed.run", *node_arguments(launch),
        "--nproc-per-node", str(launch.nproc_per_node), *launch.launcher_args,
        "-m", module, "--config", str(config_path),
    ]  # fmt: skip


def run_command(command: list[str], env: dict[str, str] | None = None, logger: logging.Logger | None = None) -> None:
    """Run a command in its own process group, log each output line, raise TorchrunError on a nonzero exit.

    If this process is interrupted, the whole group (torchrun and its workers) is terminated; if it is killed,
    its watchdog does that.
    """
    logger = logger or log
    logger.info("launching: %s", " ".join(command))
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    cause = refusal = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        env={**os.environ, **(env or {})}, start_new_session=True,
    ) as proc:  # fmt: skip
        guard(proc.pid)
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


def launch_training(module: str, config: dict, config_path: str | Path, launch: LaunchConfig,
                    env: dict[str, str] | None = None, logger: logging.Logger | None = None) -> None:  # fmt: skip
    """Write the stage's JSON config and run the module under torchrun on this node.

    Nodes other than node 0 call this directly, without Prefect.
    """
    path = Path(config_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    run_command(torchrun_command(module, path, launch), env=env, logger=logger)
