"""Two torchrun "nodes" on loopback (c10d rendezvous, one process each) train exactly as one node with two
processes, and only global rank 0 tracks: one MLflow run, each step logged once."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.model.tracking import TRACKING_URI_ENV, read_metrics, recorded_run
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command
from testkit.shakespeare import write_shakespeare_shards
from testkit.spark_cluster import free_port

MODULE = "fineforge.model.pretrain"
STEPS = 6


@pytest.fixture(scope="module")
def shards(tmp_path_factory, shared_data) -> Path:
    text = shared_data / "corpora" / "tinyshakespeare.txt"
    return write_shakespeare_shards(text, tmp_path_factory.mktemp("shards"), limit=200_000)


def write_config(tmp_path: Path, name: str, shards: Path, **overrides) -> Path:
    """A tiny model, two micro-batches per rank and step, evaluation and a checkpoint only at the end."""
    config = {
        "data_dir": str(shards), "run_dir": str(tmp_path / name), "experiment": "multi-node",
        "model_overrides": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "micro_batch_size": 4, "tokens_per_step": 4 * 32 * 2 * 2, "max_steps": STEPS, "warmup_steps": 2,
        "eval_every": 0, "eval_batches": 2, "sample_every": 0, "sample_tokens": 4, "checkpoint_every": 0,
        **overrides,
    }  # fmt: skip
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in read_metrics(run_dir) if r["kind"] == "metrics" and "train_loss" in r}


def test_two_nodes_train_as_one_node_with_two_processes(tmp_path, shards, mlflow_uri):
    from mlflow.tracking import MlflowClient

    reference = write_config(tmp_path, "one-node", shards, use_mlflow=False)
    run_command(torchrun_command(MODULE, reference, LaunchConfig(nproc_per_node=2)))

    client = MlflowClient(tracking_uri=mlflow_uri)
    env = {TRACKING_URI_ENV: mlflow_uri}  # what the flow on node 0 hands every node
    config = write_config(tmp_path, "two-nodes", shards)
    rendezvous = {"nnodes": 2, "rdzv_endpoint": f"127.0.0.1:{free_port()}", "rdzv_id": "test-two-nodes"}
    failures: list[BaseException] = []

    def node(rank: int) -> None:
        try:
            run_command(torchrun_command(MODULE, config, LaunchConfig(node_rank=rank, **rendezvous)), env=env)
        except BaseException as e:  # noqa: B036 - reported by the test thread below
            failures.append(e)

    nodes = [threading.Thread(target=node, args=(rank,)) for rank in (0, 1)]
    for thread in nodes:
        thread.start()
    for thread in nodes:
        thread.join(timeout=600)
    assert not failures, failures

    one, two = train_losses(tmp_path / "one-node"), train_losses(tmp_path / "two-nodes")
    assert sorted(one) == list(range(1, STEPS + 1))
    assert two == one  # identical, not close: the same ranks see the same data and reduce the same way
    run_id = recorded_run(tmp_path / "two-nodes")["run_id"]  # global rank 0's run, kept in the shared run dir
    history = client.get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == sorted(one)  # each step logged once: one tracking process
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [one[s] for s in sorted(one)]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [run_id]  # no process created a run of its own


def test_wrong_node_layout_fails_before_launch_naming_the_field(tmp_path, shards):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "pretrain", "--data", str(shards), "--run-dir", str(run_dir),
                                      "--nnodes", "2", "--node-rank", "1"])  # fmt: skip
    assert result.exit_code == 2
    assert "rdzv_endpoint: Value error, required when nnodes > 1" in result.output
    assert not (run_dir / "checkpoints").exists() and not list(run_dir.glob("*.json"))
