"""The data build on a real Spark standalone cluster (a master and two workers on 127.0.0.1, started from
pyspark's `spark-class`), run as a user runs it: the `fineforge data build` command with a `spark://` master.
Its output must equal the `local[2]` build's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fineforge.tasks.dedup.config import DEDUPLICATED
from fineforge.tasks.filter.config import FILTERED
from fineforge.tasks.scrub.config import SCRUBBED
from testkit.spark_cluster import standalone_cluster

SAMPLES = ["cc-main-2020-34-slice.warc.gz", "wget-2024-sample-0000.warc.gz"]
DUMP = "samples"
COMPARED_STATS = ("documents_in", "documents_out", "dropped")
# Small executors: the workers' 1 GB is a cap, not a reservation; one executor of 1 core on each worker.
CLUSTER_CONF = {"spark.executor.memory": "512m", "spark.cores.max": "2", "spark.sql.shuffle.partitions": "4"}
# trafilatura's per-document timeout (1 s) drops documents on a loaded machine: out of the comparison.
LOAD_INDEPENDENT_FILTERS = {"extraction": {"timeout": 120}}

pytestmark = pytest.mark.slow


def build(workdir: Path, listing: Path, spark: dict) -> None:
    """`fineforge data build` in its own process, with the Spark settings of a JSON config file."""
    config = workdir.parent / f"{workdir.name}.json"
    config.write_text(json.dumps({"spark": spark, "filters": LOAD_INDEPENDENT_FILTERS, "mlflow": False}))
    command = [sys.executable, "-m", "fineforge.flows.cli", "data", "build", "--config", str(config),
               "--input", str(listing), "--workdir", str(workdir), "--dump", DUMP]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr


def stage_output(workdir: Path, stage: str) -> tuple[list[dict], dict]:
    """The stage's documents sorted by id, and the counts of its stats.json."""
    folder = workdir / DUMP / stage
    rows = pq.read_table(sorted(folder.glob("*.parquet"))).to_pylist()
    stats = json.loads((folder / "stats.json").read_text())
    return sorted(rows, key=lambda row: row["id"]), {key: stats[key] for key in COMPARED_STATS}


def test_cluster_build_equals_local_build(tmp_path, shared_data):
    listing = tmp_path / "warcs.txt"
    listing.write_text("".join(f"{shared_data / 'warc' / name}\n" for name in SAMPLES))
    build(tmp_path / "local", listing, {"master": "local[2]"})
    with standalone_cluster(tmp_path / "cluster-logs", workers=2, cores=1, memory="1g") as master:
        build(tmp_path / "cluster", listing, {
            "master": master, "driver_host": "127.0.0.1", "driver_bind_address": "127.0.0.1",
            "executor_python": sys.executable, "extra_conf": CLUSTER_CONF,
        })  # fmt: skip

    for stage in (FILTERED, DEDUPLICATED, SCRUBBED):
        local_rows, local_stats = stage_output(tmp_path / "local", stage)
        cluster_rows, cluster_stats = stage_output(tmp_path / "cluster", stage)
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
