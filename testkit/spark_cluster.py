"""A real Spark standalone cluster on 127.0.0.1: one master and N workers started from pyspark's `spark-class`.

Each daemon is its own JVM process with its log in the given folder. The master listens on a free port
chosen here (so the workers start at the same time as the master); every other port is chosen by the
daemons (port 0), and the master's REST submission server (a fixed port) is off. Used by tests and
benchmarks as a context manager; `Cluster.kill_worker` fails one worker as a lost machine would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
WORKER_REGISTERED = re.compile(r"Registering worker ")
DAEMON_MEMORY = "256m"  # heap of the master and worker daemons themselves (executors are separate JVMs)
START_TIMEOUT_S = 120.0
# Small executors: the workers' memory is a cap, not a reservation; one executor of 1 core on each worker.
EXECUTOR_CONF = {"spark.executor.memory": "512m", "spark.cores.max": "2", "spark.sql.shuffle.partitions": "4"}


class ClusterError(RuntimeError):
    """A daemon of the cluster did not start; the message quotes its log."""


def spark_class() -> Path:
    """pyspark's own `bin/spark-class` launcher."""
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _daemon_env() -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _start(args: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen:
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [str(spark_class()), *args], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _wait_for(log_file: Path, pattern: re.Pattern, count: int, process: subprocess.Popen) -> None:
    """Wait for `count` matches of `pattern` in a growing log file; ClusterError if the daemon dies or times out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        if len(pattern.findall(text)) >= count:
            return
        if process.poll() is not None:
            raise ClusterError(f"{log_file.name}: daemon exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.2)
    raise ClusterError(f"{log_file.name}: no {pattern.pattern!r} x{count} within {START_TIMEOUT_S:.0f}s")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the daemon's process group (the worker's executors too), SIGKILL what outlives 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def cluster_spark_config(master: str) -> dict:
    """The `spark` section of a fineforge config that runs on the cluster at `master`: the driver on 127.0.0.1,
    the executors on this Python, small executors."""
    return {"master": master, "driver_host": LOOPBACK, "driver_bind_address": LOOPBACK,
            "executor_python": sys.executable, "extra_conf": EXECUTOR_CONF}


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster: the master's URL, each worker's daemon and its folder (executor logs)."""

    url: str
    workers: list[subprocess.Popen]
    worker_dirs: list[Path]

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index` and its executors (its process group), as a machine failure would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()


@contextlib.contextmanager
def standalone_cluster(log_dir: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> Iterator[Cluster]:
    """Start a master and `workers` workers (each `cores` cores, `memory` for executors) on 127.0.0.1;
    yield the cluster once every worker has registered; stop them all on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = _daemon_env()
    processes: list[subprocess.Popen] = []
    try:
        master_log = log_dir / "master.log"
        port = free_port()
        master = _start([MASTER_CLASS, "--host", LOOPBACK, "--port", str(port), "--webui-port", "0"], master_log, env)
        processes.append(master)
        url = f"spark://{LOOPBACK}:{port}"
        work_dirs = [log_dir / f"worker-{index}" for index in range(workers)]
        for index, work_dir in enumerate(work_dirs):
            args = [WORKER_CLASS, "--host", LOOPBACK, "--port", "0", "--webui-port", "0", "--cores", str(cores),
                    "--memory", memory, "--work-dir", str(work_dir), url]  # fmt: skip
            processes.append(_start(args, log_dir / f"worker-{index}.log", env))
        _wait_for(master_log, WORKER_REGISTERED, workers, master)
        yield Cluster(url, processes[1:], work_dirs)
    finally:
        for process in reversed(processes):
            _stop(process)
