"""One SparkSession per process, configured for the embedded default or a real cluster."""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class SparkConfig(BaseModel):
    """Where Spark runs. `local[*]` by default; a `spark://` or `k8s://` master for a cluster."""

    master: str = Field("local[*]", description="Spark master URL: local[N], spark://host:port, k8s://...")
    app_name: str = "fineforge"
    ui: bool = Field(False, description="Serve the Spark UI (port 4040).")
    driver_memory: str = "2g"
    extra_conf: dict[str, str] = Field(default_factory=dict, description="Any further spark.* settings.")


LOCAL_SHUFFLE_PARTITIONS_PER_CORE = 2


def local_cores(master: str) -> int:
    """Cores of a `local`, `local[N]` or `local[*]` master."""
    inside = master[len("local["):-1] if master.startswith("local[") else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside.split(",")[0])


def spark_session(config: SparkConfig | None = None):
    """Return the process's SparkSession, creating it on first use.

    Workers run the same Python as the driver, so datatrove and the models are importable there.
    A local master is bound to 127.0.0.1.
    """
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(config.master)
        .appName(config.app_name)
        .config("spark.ui.enabled", str(config.ui).lower())
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
    )
    if config.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # One machine: a few shuffle partitions per core instead of Spark's cluster-sized 200.
        partitions = LOCAL_SHUFFLE_PARTITIONS_PER_CORE * local_cores(config.master)
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    for key, value in config.extra_conf.items():
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
