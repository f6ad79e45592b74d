"""The data build on a real Spark standalone cluster (a master and two workers on 127.0.0.1, started from
pyspark's `spark-class`), run as a user runs it: the `fineforge data build` command with a `spark://` master.
Its output must equal the `local[2]` build's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fineforge.tasks.dedup.config import DEDUPLICATED
from fineforge.tasks.filter.config import FILTERED
from fineforge.tasks.scrub.config import SCRUBBED
from testkit.spark_cluster import cluster_spark_config, standalone_cluster
from testkit.stage_output import LOAD_INDEPENDENT_FILTERS, stage_output

SAMPLES = ["cc-main-2020-34-slice.warc.gz", "wget-2024-sample-0000.warc.gz"]
DUMP = "samples"

pytestmark = pytest.mark.slow


def build(workdir: Path, listing: Path, spark: dict) -> None:
    """`fineforge data build` in its own process, with the Spark settings of a JSON config file."""
    config = workdir.parent / f"{workdir.name}.json"
    config.write_text(json.dumps({"spark": spark, "filters": LOAD_INDEPENDENT_FILTERS, "mlflow": False}))
    command = [sys.executable, "-m", "fineforge.flows.cli", "data", "build", "--config", str(config),
               "--input", str(listing), "--workdir", str(workdir), "--dump", DUMP]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_build_equals_local_build(tmp_path, shared_data):
    listing = tmp_path / "warcs.txt"
    listing.write_text("".join(f"{shared_data / 'warc' / name}\n" for name in SAMPLES))
    build(tmp_path / "local", listing, {"master": "local[2]"})
    with standalone_cluster(tmp_path / "cluster-logs", workers=2, cores=1, memory="1g") as cluster:
        build(tmp_path / "cluster", listing, cluster_spark_config(cluster.url))

    for stage in (FILTERED, DEDUPLICATED, SCRUBBED):
        local_rows, local_stats = stage_output(tmp_path / "local" / DUMP / stage)
        cluster_rows, cluster_stats = stage_output(tmp_path / "cluster" / DUMP / stage)
        assert cluster_stats == local_stats, stage
        assert cluster_rows == local_rows, stage
    assert local_rows, "the samples hold English documents that pass every filter"
    # The work ran in executors launched by both workers, not in the driver.
    for worker in ("worker-0", "worker-1"):
        executor_logs = list((tmp_path / "cluster-logs" / worker).glob("app-*/*/stderr"))
        assert executor_logs, f"{worker} launched no executor"
    executor_logs = (tmp_path / "cluster-logs").glob("worker-*/app-*/*/stderr")
    ran = "".join(log.read_text(errors="replace") for log in executor_logs)
    assert "Running task" in ran
