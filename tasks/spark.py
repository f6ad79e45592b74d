"""One SparkSession per process, configured for the embedded default or a real cluster."""

from __future__ import annotations

import os
import sys

from pydantic import BaseModel, Field


class SparkConfig(BaseModel):
    """Where Spark runs. `local[*]` by default; a `spark://` or `k8s://` master for a cluster."""

    master: str = Field("local[*]", description="Spark master URL: local[N], spark://host:port, k8s://...")
    app_name: str = "fineforge"
    ui: bool = Field(False, description="Serve the Spark UI (port 4040).")
    driver_memory: str = "2g"
    extra_conf: dict[str, str] = Field(default_factory=dict, description="Any further spark.* settings.")


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
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    for key, value in config.extra_conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
