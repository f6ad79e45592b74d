"""Stopping `fineforge train pretrain` as a user does (SIGKILL, SIGTERM of the command) stops every process it
started: torchrun, its worker, Prefect's temporary API (run without telemetry), the watchdog; the MLflow run ends
KILLED; while it runs, a second command on the same run dir refuses with the first one's pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fineforge.tasks.common.watchdog import start_time
from testkit.processes import descendants
from testkit.services import fineforge
from testkit.shakespeare import write_shakespeare_shards

ENDLESS = {"model_overrides": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}, "micro_batch_size": 4,
           "max_steps": 1_000_000, "warmup_steps": 2, "eval_every": 1_000_000, "eval_batches": 2,
           "sample_every": 1_000_000, "checkpoint_every": 1_000_000}  # fmt: skip
STOP_SECONDS = 150  # torchrun gives its worker 30 s, the watchdog torchrun 40 s; the machine may be loaded


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.5)


def training_started(run_dir: Path) -> bool:
    metrics = run_dir / "metrics.jsonl"
    return metrics.is_file() and '"kind": "metrics"' in metrics.read_text()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stopped_training_command_stops_everything_it_started(stop, shared_data, tmp_path, mlflow_uri):
    data = write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", tmp_path / "shards",
                                    limit=50_000)
    (tmp_path / "train.json").write_text(json.dumps(ENDLESS))
    run_dir = tmp_path / "run"
    command = ["train", "pretrain", "--data", str(data), "--run-dir", str(run_dir), "--config",
               str(tmp_path / "train.json"), "--retries", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
    cli = subprocess.Popen([sys.executable, "-m", "fineforge.flows.cli", *command], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: training_started(run_dir) or cli.poll() is not None, 300, "training started")
        assert cli.poll() is None, cli.stderr.read()
        started = {pid: start_time(pid) for pid in descendants(cli.pid)}
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started]
        for part in (b"torch.distributed.run", b"fineforge.model.pretrain", b"uvicorn", b"watchdog"):
            assert any(part in c for c in commands), (part, commands)
        server = next(pid for pid, c in zip(started, commands, strict=True) if b"uvicorn" in c)
        assert b"DO_NOT_TRACK=1" in Path(f"/proc/{server}/environ").read_bytes().split(b"\0")  # no telemetry

        if stop == signal.SIGKILL:  # the lock: a second run on the same run dir refuses, naming the first
            second = fineforge(*command, timeout=120)
            assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
            assert f"is in use by process {cli.pid} (" in second.stderr and "train pretrain" in second.stderr

        cli.send_signal(stop)
        assert cli.wait(timeout=STOP_SECONDS) == (-stop if stop == signal.SIGKILL else 128 + stop)
        wait_for(lambda: all(start_time(pid) != since for pid, since in started.items()), STOP_SECONDS,
                 "every process the command started has ended")
    finally:
        if cli.poll() is None:
            cli.kill()
    record = json.loads((run_dir / "mlflow_run.json").read_text())
    assert MlflowClient(mlflow_uri).get_run(record["run_id"]).info.status == "KILLED"
