"""Launch a `model.<stage>` training module under torchrun as a subprocess, streaming its log into Prefect.

Single node by default (`--standalone --nproc-per-node N`); multi-node launcher arguments (`--nnodes`,
`--node-rank`, `--rdzv-endpoint`, ...) replace `--standalone`. A nonzero exit fails the task; a retry runs
the same command again, and the training module resumes from its newest checkpoint.
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

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

TAIL_LINES = 40  # log lines quoted in the error of a failed run
# The last line of a Python traceback ("ConfigError: ..."); torchrun's own summary error is not the cause.
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): \S")
LAUNCHER_ERRORS = ("ChildFailedError", "SignalException")


class TorchrunError(RuntimeError):
    """torchrun exited with a nonzero status."""


class LaunchConfig(BaseModel):
    """How torchrun starts the worker processes."""

    nproc_per_node: int = Field(1, ge=1, description="Worker processes on this node (one per GPU).")
    launcher_args: list[str] = Field(
        default_factory=list,
        description="torchrun arguments for multi-node runs (e.g. --nnodes 2 --node-rank 0 --rdzv-backend c10d "
        "--rdzv-endpoint host:29400 --rdzv-id run1); they replace --standalone.",
    )
    retries: int = Field(2, ge=0, description="Relaunches after a failure; each resumes from the newest checkpoint.")


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
    cause = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        env={**os.environ, **(env or {})}, start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                if EXCEPTION_LINE.match(line) and not any(name in line for name in LAUNCHER_ERRORS):
                    cause = line
                logger.info("%s", line)
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            raise
    if code != 0:
        reason = f": {cause}" if cause else ""
        raise TorchrunError(f"torchrun exited with status {code}{reason}\nlast lines:\n" + "\n".join(tail))


@task(name="torchrun")
def torchrun_task(module: str, config: dict, config_path: str, launch: LaunchConfig, env: dict[str, str]) -> None:
    """Write the stage's JSON config and run the module under torchrun (retries set by the caller)."""
    path = Path(config_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    run_command(torchrun_command(module, path, launch), env=env, logger=get_run_logger())
