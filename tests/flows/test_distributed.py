"""The distributed path end to end, every service a process on 127.0.0.1 (the services infra/ starts as
containers): PostgreSQL (a fresh role and databases on the machine's cluster), a Prefect server on it with a
process worker, an MLflow server on it with its artifacts in an S3 server (moto), and a Spark standalone
cluster of two workers. The tiny `pipeline` deployment runs through them with its work dir in the S3 server:
the data build on the cluster, tokenize, pretraining on two torchrun nodes (node 0 in the flow run, node 1 from
`fineforge pipeline run` with node_rank 1), stage outputs and checkpoints committed to the bucket, MLflow's
artifacts in the bucket. The committed data stages and token shards, pulled from the bucket, equal those of a
`local[2]` build of the same input in a local work dir. Then a data build loses a Spark worker mid-stage and
still writes the same documents as the undisturbed build.

Every "node" is this machine, so the work dir's staging folder (docs/scaling.md) is shared as on a cluster.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.model.shards import load_manifest
from fineforge.tasks.common.committed import pull
from fineforge.tasks.common.object_store import local_path
from fineforge.tasks.dedup.config import DEDUPLICATED
from fineforge.tasks.filter.config import FILTERED
from fineforge.tasks.scrub.config import SCRUBBED
from testkit.postgres import postgres_role, psql
from testkit.s3_store import S3Store, s3_store
from testkit.services import FINAL_STATES, Server, fineforge, start_server, stop_server, tiny_pipeline_parameters
from testkit.spark_cluster import Cluster, cluster_spark_config, free_port, standalone_cluster
from testkit.stage_output import LOAD_INDEPENDENT_FILTERS, stage_output

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

RUN_SECONDS = 900
BUCKET = "fineforge-mlflow"  # as infra/docker-compose.yml's
ARTIFACTS_PREFIX = "mlflow"
WORK_BUCKET = "fineforge-work"


@dataclass(frozen=True)
class Stack:
    server: Server
    s3: S3Store
    cluster: Cluster
    database: str  # Prefect's; MLflow's is <database>_mlflow
    staging: Path  # the staging folder of the S3 work dirs, shared by every node (all are this machine)

    def node_env(self) -> dict[str, str]:
        """What every fineforge process needs: the Prefect/MLflow URLs, the S3 work dir's endpoint and staging."""
        return {**self.server.env, **self.s3.env(self.staging)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """Every service started, the deployments registered; all stopped at the end, also on failure."""
    root = tmp_path_factory.mktemp("stack")
    with ExitStack() as started:
        role = started.enter_context(postgres_role())
        s3 = started.enter_context(s3_store(root / "s3"))
        bucket = s3.make_bucket(BUCKET)
        s3.make_bucket(WORK_BUCKET)
        staging = root / "staging"
        cluster = started.enter_context(standalone_cluster(root / "spark", workers=2, cores=1, memory="1g"))
        home = root / "server"
        started.callback(stop_server, home)
        server = start_server(home, "--database-url", role.url(), "--artifacts-destination",
                              f"{bucket}/{ARTIFACTS_PREFIX}", env={**s3.mlflow_env(), **s3.env(staging)})
        deployed = fineforge("deploy", "--working-dir", str(root), env=server.env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield Stack(server, s3, cluster, role.name, staging)


@pytest.fixture
def workdir(stack, monkeypatch) -> str:
    """The work dir every node shares, in the S3 server; this process reaches it and stages it as the nodes do."""
    for name, value in stack.s3.env(stack.staging).items():
        monkeypatch.setenv(name, value)
    return f"s3://{WORK_BUCKET}/work"


def pipeline_config(shared_data: Path, workdir: str, cluster: Cluster) -> dict:
    """The tiny pipeline on the Spark cluster, its pretraining on two torchrun nodes (node 0's config)."""
    config = tiny_pipeline_parameters(shared_data, workdir)["config"]
    config["spark"] = cluster_spark_config(cluster.url)
    config["data_build"]["filters"] = LOAD_INDEPENDENT_FILTERS
    config["pretrain"]["launch"] = {"nnodes": 2, "node_rank": 0, "rdzv_endpoint": f"127.0.0.1:{free_port()}",
                                    "rdzv_id": "distributed-test", "retries": 0}
    return config


def start_node(config: dict, rank: int, folder: Path, env: dict[str, str]) -> subprocess.Popen:
    """`fineforge pipeline run` of another node: the same config, its own node_rank; output in a log file."""
    config = json.loads(json.dumps(config))
    config["pretrain"]["launch"]["node_rank"] = rank
    path = folder / f"pipeline-node{rank}.json"
    path.write_text(json.dumps(config))
    with open(folder / f"node{rank}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "fineforge.flows.cli", "pipeline", "run", "--config", str(path)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})


def completed(server: Server, run_id: str) -> dict:
    run = server.wait_for_run(run_id, RUN_SECONDS)
    assert run["state"]["type"] == "COMPLETED", server.run_logs(run_id)
    return run


def test_pipeline_runs_through_every_service_and_a_build_survives_a_lost_worker(stack, workdir, shared_data,
                                                                                 tmp_path, spark):
    server = stack.server
    config = pipeline_config(shared_data, workdir, stack.cluster)
    earlier = {path for folder in stack.cluster.worker_dirs for path in folder.glob("app-*")}
    run = server.run_deployment("pipeline/tiny", {"config": config})
    node1 = start_node(config, 1, tmp_path, stack.node_env())
    try:
        completed(server, run["id"])
        assert node1.wait(timeout=120) == 0, (tmp_path / "node1.log").read_text()[-3000:]
    finally:
        if node1.poll() is None:
            node1.kill()
            node1.wait()

    check_tracking(stack, run["id"])
    committed = stack.s3.keys(WORK_BUCKET, "work/")
    assert any(key.endswith("/_COMMITTED.json") for key in committed), committed  # the stages' outputs
    assert any("/step_" in key and key.endswith("/model.safetensors") for key in committed), committed
    check_both_workers_ran_tasks(stack.cluster, earlier)
    check_store_equals_local_build(config, tmp_path)
    check_lost_worker_build(stack, config, shared_data, f"s3://{WORK_BUCKET}/lost-worker")


def check_tracking(stack: Stack, flow_run_id: str) -> None:
    """One MLflow training run of world size 2 tracked once per step; MLflow's and Prefect's records in their
    Postgres databases; the artifacts (checkpoint, report card) in the S3 bucket."""
    mlflow = MlflowClient(tracking_uri=stack.server.mlflow_url)
    experiment = mlflow.get_experiment_by_name("fineforge-pretrain")
    (training,) = mlflow.search_runs([experiment.experiment_id])
    assert training.data.params["world_size"] == "2"
    history = mlflow.get_metric_history(training.info.run_id, "train_loss")
    max_steps = int(training.data.params["max_steps"])
    assert sorted(m.step for m in history) == list(range(1, max_steps + 1))  # logged once: one tracking rank
    assert psql(f"SELECT count(*) FROM flow_run WHERE id = '{flow_run_id}'", database=stack.database) == "1"
    assert psql("SELECT count(*) FROM experiments WHERE name = 'fineforge-pipeline'",
                database=f"{stack.database}_mlflow") == "1"
    keys = stack.s3.keys(BUCKET, f"{ARTIFACTS_PREFIX}/")
    assert any(key.endswith("/checkpoint/model.safetensors") for key in keys), keys
    assert any(key.endswith("/report.md") for key in keys), keys


def check_both_workers_ran_tasks(cluster: Cluster, earlier: set[Path]) -> None:
    """The pipeline's Spark work ran in executors that both workers launched, not in the driver."""
    for folder in cluster.worker_dirs:
        logs = [p for app in folder.glob("app-*") if app not in earlier for p in app.glob("*/stderr")]
        assert any("Running task" in log.read_text(errors="replace") for log in logs), f"{folder.name} ran no task"


def check_store_equals_local_build(pipeline: dict, tmp_path: Path) -> None:
    """The data stages and token shards committed to the bucket by the cluster equal a `local[2]` build of the same
    input in a local work dir (`fineforge data build` and `tokens build` in this process)."""
    local, pulled = tmp_path / "local", tmp_path / "pulled"
    build = {**pipeline["data_build"], "workdir": str(local), "spark": {"master": "local[2]"}, "mlflow": False}
    (tmp_path / "local-build.json").write_text(json.dumps(build))
    runner = CliRunner()
    built = runner.invoke(app, ["data", "build", "--config", str(tmp_path / "local-build.json")])
    assert built.exit_code == 0, built.output
    dump, tokens = pipeline["data_build"]["dump"], pipeline["tokenize"]
    tokenized = runner.invoke(app, ["tokens", "build", "--workdir", str(local), "--name", tokens["name"],
                                    "--tokenizer", tokens["tokenizer"], "--val-fraction", str(tokens["val_fraction"]),
                                    "--spark-master", "local[2]"])  # fmt: skip
    assert tokenized.exit_code == 0, tokenized.output
    for stage in (FILTERED, DEDUPLICATED, SCRUBBED):
        assert pull(f"{pipeline['workdir']}/{dump}/{stage}", pulled / stage) is not None, f"{stage} not committed"
        assert stage_output(pulled / stage) == stage_output(local / dump / stage), stage
    assert stage_output(local / dump / SCRUBBED)[0], "the sample WARCs hold documents that pass every filter"
    pull(f"{pipeline['workdir']}/tokens/{tokens['name']}", pulled / "tokens")
    local_tokens = local / "tokens" / tokens["name"]
    remote, expected = load_manifest(pulled / "tokens", verify=True), load_manifest(local_tokens)
    assert remote["shards"] == expected["shards"] and remote["tokens"] == expected["tokens"]
    assert [p.read_bytes() for p in sorted((pulled / "tokens").glob("*.bin"))] == [
        p.read_bytes() for p in sorted(local_tokens.glob("*.bin"))]


def check_lost_worker_build(stack: Stack, pipeline: dict, shared_data: Path, workdir: str) -> None:
    """The pipeline's data build again, from its deployment, into another work dir; one Spark worker is killed
    once its executor runs a task. The build completes with the undisturbed build's documents and counts."""
    server, cluster = stack.server, stack.cluster
    earlier = {path for folder in cluster.worker_dirs for path in folder.glob("app-*")}
    build = {**pipeline["data_build"], "workdir": workdir, "spark": pipeline["spark"]}
    run = server.run_deployment("data_build/default", {"config": build})
    killed = kill_worker_running_a_task(cluster, earlier, server, run["id"])
    completed(server, run["id"])
    assert killed is not None, "no worker ran a task of the build before it finished"
    dump = pipeline["data_build"]["dump"]
    for stage in (FILTERED, DEDUPLICATED, SCRUBBED):
        undisturbed = stage_output(local_path(pipeline["workdir"]) / dump / stage)
        assert stage_output(local_path(workdir) / dump / stage) == undisturbed, stage
    assert undisturbed[0], "the sample WARCs hold documents that pass every filter"


def kill_worker_running_a_task(cluster: Cluster, earlier: set[Path], server: Server, run_id: str) -> int | None:
    """SIGKILL the first worker whose executor of a new application logs a running task, while the flow run is
    still running; its index, or None if the run finished first."""
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        for index, folder in enumerate(cluster.worker_dirs):
            logs = [p for app in folder.glob("app-*") if app not in earlier for p in app.glob("*/stderr")]
            if any("Running task" in log.read_text(errors="replace") for log in logs):
                cluster.kill_worker(index)
                return index
        if server.api("GET", f"/flow_runs/{run_id}")["state"]["type"] in FINAL_STATES:
            return None
        time.sleep(0.5)
    return None
