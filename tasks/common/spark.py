"""One SparkSession per process, configured for the embedded default or a real cluster."""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import sys
import threading
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class SparkConfig(BaseModel):
    """Where Spark runs. `local[*]` by default; a `spark://` or `k8s://` master for a cluster.

    A local master is bound to 127.0.0.1 and runs this process's Python; for a cluster the driver's address
    and the executors' Python are the cluster's (Spark's defaults) unless set here.
    """

    model_config = ConfigDict(extra="forbid")

    master: str = Field("local[*]", description="Spark master URL: local[N], spark://host:port, k8s://...")
    app_name: str = "fineforge"
    ui: bool = Field(False, description="Serve the Spark UI (port 4040).")
    driver_memory: str = "2g"
    driver_host: str | None = Field(
        None, description="Address the executors reach the driver at (spark.driver.host); local default 127.0.0.1."
    )
    driver_bind_address: str | None = Field(
        None, description="Address the driver listens on (spark.driver.bindAddress); local default 127.0.0.1."
    )
    executor_python: str | None = Field(
        None,
        description="Python the executors run (PYSPARK_PYTHON), e.g. /opt/venv/bin/python; local default: this "
        "process's Python; cluster default: $PYSPARK_PYTHON, else python3 on the workers.",
    )
    extra_conf: dict[str, str] = Field(default_factory=dict, description="Any further spark.* settings.")

    @property
    def is_local(self) -> bool:
        """True for `local`, `local[N]` and `local[*]` masters."""
        return self.master == "local" or self.master.startswith("local[")


MASTER_CONNECT_SECONDS = 5.0
STANDALONE_MASTER_PORT = 7077  # Spark's default


def master_endpoints(master: str) -> list[tuple[str, int]]:
    """The (host, port) addresses a cluster master URL names: `spark://h:p[,h2:p2]` (standalone, with standby
    masters) or `k8s://https://h:p` (the Kubernetes API); none for local and YARN masters."""
    if master.startswith("spark://"):
        urls = [urlsplit(f"spark://{part}") for part in master.removeprefix("spark://").split(",")]
        return [(url.hostname, url.port or STANDALONE_MASTER_PORT) for url in urls if url.hostname]
    if master.startswith("k8s://"):
        api = master.removeprefix("k8s://")
        url = urlsplit(api if "://" in api else f"https://{api}")
        return [(url.hostname, url.port or (80 if url.scheme == "http" else 443))] if url.hostname else []
    return []


def answers(host: str, port: int, timeout: float = MASTER_CONNECT_SECONDS) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class SparkMasterUnreachable(RuntimeError):
    """The configured cluster master does not answer."""


def require_master(master: str) -> None:
    """SparkMasterUnreachable, in one line, when no address of a cluster master answers (Spark itself would
    retry for minutes and end in a long Py4J trace); nothing to check for local and YARN masters."""
    endpoints = master_endpoints(master)
    if endpoints and not any(answers(host, port) for host, port in endpoints):
        raise SparkMasterUnreachable(f"Spark master {master} does not answer (no connection within "
                                     f"{MASTER_CONNECT_SECONDS:g} s): start it, or use local[*]")


LOCAL_SHUFFLE_PARTITIONS_PER_CORE = 2


def local_cores(master: str) -> int:
    """Cores of a `local`, `local[N]` or `local[*]` master."""
    inside = master[len("local["):-1] if master.startswith("local[") else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside.split(",")[0])


LOOPBACK = "127.0.0.1"


def session_settings(config: SparkConfig) -> dict[str, str]:
    """The spark.* settings of a session for `config` (extra_conf last, so it overrides)."""
    settings = {
        "spark.ui.enabled": str(config.ui).lower(),
        "spark.driver.memory": config.driver_memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
    }
    host, bind = config.driver_host, config.driver_bind_address
    if config.is_local:
        host, bind = host or LOOPBACK, bind or LOOPBACK
        # One machine: a few shuffle partitions per core instead of Spark's cluster-sized 200.
        partitions = LOCAL_SHUFFLE_PARTITIONS_PER_CORE * local_cores(config.master)
        settings["spark.sql.shuffle.partitions"] = str(partitions)
    if host:
        settings["spark.driver.host"] = host
    if bind:
        settings["spark.driver.bindAddress"] = bind
    return {**settings, **config.extra_conf}


def executor_python(config: SparkConfig) -> str | None:
    """The Python the executors run: the configured one, this process's for a local master, else None
    (the cluster's own: $PYSPARK_PYTHON if this process has it, else python3)."""
    if config.executor_python:
        return config.executor_python
    return os.environ.get("PYSPARK_PYTHON", sys.executable) if config.is_local else None


def spark_session(config: SparkConfig | None = None):
    """Return the process's SparkSession, creating it on first use (settings of `session_settings`)."""
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    require_master(config.master)
    python = executor_python(config)
    if python:
        os.environ["PYSPARK_PYTHON"] = python  # pyspark hands the driver's value to every executor
    if config.is_local:
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    builder = SparkSession.builder.master(config.master).appName(config.app_name)
    for key, value in session_settings(config).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


class SparkProgress:
    """Log the progress of the running Spark jobs every few seconds (a context manager)."""

    def __init__(self, session, label: str, every_seconds: float = 5.0):
        self._tracker = session.sparkContext.statusTracker()
        self._label = label
        self._every = every_seconds
        self._stop = threading.Event()
        # The caller's context (e.g. Prefect's task run) goes with the thread, so its logs land in that run.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), daemon=True)

    def __enter__(self) -> SparkProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = None
        while not self._stop.wait(self._every):
            done = total = 0
            for stage_id in self._tracker.getActiveStageIds():
                info = self._tracker.getStageInfo(stage_id)
                if info is not None:
                    done, total = done + info.numCompletedTasks, total + info.numTasks
            if total and (done, total) != last:
                log.info("%s: %d/%d Spark tasks done", self._label, done, total)
                last = (done, total)
