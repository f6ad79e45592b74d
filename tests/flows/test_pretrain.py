"""The `pretrain` Prefect flow end to end: torchrun subprocess, a real MLflow store, retry after a killed worker
continuing the same MLflow run."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from fineforge.flows.pretrain import pretrain
from fineforge.flows.pretrain_config import PretrainFlowConfig
from fineforge.model.checkpoint import CHECKPOINTS_SUBDIR, latest_checkpoint
from fineforge.model.pretrain import PretrainConfig
from fineforge.model.tracking import read_metrics
from fineforge.tasks.training.launch import LaunchConfig
from testkit.processes import children, kill_tree
from testkit.shakespeare import write_shakespeare_shards

MAX_STEPS = 12


def kill_worker_after_first_checkpoint(run_dir: Path, killed: list[int]) -> None:
    """SIGKILL the training worker (child of the torchrun this test process launched) once a checkpoint exists."""
    deadline = time.monotonic() + 180
    while latest_checkpoint(run_dir / CHECKPOINTS_SUBDIR) is None:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    for pid in children(os.getpid()):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"torch.distributed.run" in cmdline:
            for worker in children(pid):
                killed += kill_tree(worker)


def test_pretrain_flow_logs_to_mlflow_and_resumes_after_failure(shared_data, tmp_path, mlflow_uri, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one worker thread, as torchrun gives each of several workers
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # the default 10 s outlasts the run
    data = write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", tmp_path / "shards",
                                    limit=200_000)
    run_dir = tmp_path / "run"
    train = PretrainConfig(
        data_dir=str(data), run_dir=str(run_dir), experiment="pretrain-test",
        model_overrides={"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
        micro_batch_size=4, max_steps=MAX_STEPS, warmup_steps=2, eval_every=6, eval_batches=2,
        sample_every=6, sample_tokens=8, checkpoint_every=4,
    )  # fmt: skip
    killed: list[int] = []
    killer = threading.Thread(target=kill_worker_after_first_checkpoint, args=(run_dir, killed), daemon=True)
    killer.start()

    result = pretrain(PretrainFlowConfig(train=train, launch=LaunchConfig(nproc_per_node=1, retries=1)))
    killer.join()

    assert killed, "the worker was not killed: the retry path was not exercised"
    starts = [r for r in read_metrics(run_dir) if r["kind"] == "start"]
    assert [s["resumed"] for s in starts] == [False, True] and starts[1]["step"] >= 4
    assert result["step"] == MAX_STEPS and result["val_loss"] is not None

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [run.info.run_id]  # one run
    assert run.info.status == "FINISHED" and run.data.tags["fineforge.stage"] == "pretrain"
    assert run.data.params["model.n_layer"] == "2" and run.data.params["max_steps"] == str(MAX_STEPS)
    assert {"train_loss", "val_loss", "lr", "tokens_per_s", "grad_norm"} <= set(run.data.metrics)
    assert run.data.metrics["resumed_from_step"] == starts[1]["step"]  # the retry continued this run
    assert any(name.startswith("system/") for name in run.data.metrics)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert {m.step for m in history} == set(range(1, MAX_STEPS + 1))
    assert run.data.metrics["val_loss"] == result["val_loss"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert {"checkpoint/model.safetensors", "checkpoint/optimizer.safetensors", "checkpoint/meta.json"} <= artifacts
    samples = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert f"samples/step_{MAX_STEPS:08d}.txt" in samples
    assert {"config.json", "metrics.jsonl"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config.json")["max_steps"] == MAX_STEPS
