"""One MLflow run per training run, on a real MLflow store: continued on resume, never left RUNNING."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fineforge.model.tracking import RUN_RECORD, Tracker, read_metrics, recorded_run, settle_run


def abandon(tracker: Tracker) -> None:
    """What a SIGKILL leaves behind: the MLflow run RUNNING (the test stops its threads and files quietly)."""
    tracker._monitor.finish()
    tracker._jsonl.close()


@pytest.fixture
def client(mlflow_uri) -> MlflowClient:
    return MlflowClient(mlflow_uri)


def test_a_run_logs_params_metrics_and_its_files(tmp_path, client, mlflow_uri):
    run_dir = tmp_path / "r1"
    tracker = Tracker(run_dir, "tracking-test", tags={"fineforge.stage": "pretrain"})
    tracker.params({"lr": 0.001, "sample_prompts": ["a", "b"]})
    tracker.config({"lr": 0.001, "max_steps": 2})
    tracker.metrics(1, train_loss=2.5, mfu=None)
    tracker.text("hello", "samples/step_00000001.txt")
    tracker.close()
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["fineforge.stage"] == "pretrain"
    assert run.data.params == {"lr": "0.001", "sample_prompts": "['a', 'b']"}
    assert {k: v for k, v in run.data.metrics.items() if not k.startswith("system/")} == {"train_loss": 2.5}
    assert any(name.startswith("system/") for name in run.data.metrics)  # a closing sample, however short the run
    assert {a.path for a in client.list_artifacts(tracker.run_id)} == {"config.json", "metrics.jsonl", "samples"}
    assert recorded_run(run_dir) == {"run_id": tracker.run_id, "tracking_uri": mlflow_uri,
                                     "experiment": "tracking-test"}
    artifacts = client.get_experiment(run.info.experiment_id).artifact_location
    assert artifacts == (Path(mlflow_uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()  # not ./mlruns
    assert [r["kind"] for r in read_metrics(run_dir)] == ["metrics"]


def test_a_resumed_run_continues_the_killed_one(tmp_path, client):
    run_dir = tmp_path / "r2"
    first = Tracker(run_dir, "tracking-test")
    first.params({"lr": 0.001, "max_steps": 10})
    first.metrics(1, train_loss=3.0)
    abandon(first)
    assert client.get_run(first.run_id).info.status == "RUNNING"

    resumed = Tracker(run_dir, "tracking-test", resumed_step=4)
    resumed.params({"lr": 0.001, "max_steps": 20})  # the config changed: params are immutable in MLflow
    resumed.metrics(5, train_loss=2.0)
    resumed.close()
    assert resumed.run_id == first.run_id
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["resumed_from_step"] == 4
    assert run.data.params["max_steps"] == "10" and run.data.tags["changed_on_resume.max_steps"] == "20"
    assert [m.step for m in client.get_metric_history(first.run_id, "train_loss")] == [1, 5]


def test_a_fresh_start_marks_the_killed_run_and_starts_a_new_one(tmp_path, client):
    run_dir = tmp_path / "r3"
    killed = Tracker(run_dir, "tracking-test")
    abandon(killed)
    fresh = Tracker(run_dir, "tracking-test")  # no checkpoint to resume (or resume off)
    fresh.close("FAILED")
    assert fresh.run_id != killed.run_id and recorded_run(run_dir)["run_id"] == fresh.run_id
    assert client.get_run(killed.run_id).info.status == "KILLED"
    assert client.get_run(fresh.run_id).info.status == "FAILED"


def test_a_launcher_settles_a_run_it_gives_up_on(tmp_path, client, mlflow_uri):
    run_dir = tmp_path / "r4"
    killed = Tracker(run_dir, "tracking-test")
    abandon(killed)
    assert settle_run(run_dir, "FAILED", mlflow_uri) == killed.run_id
    assert client.get_run(killed.run_id).info.status == "FAILED"
    settle_run(run_dir, "KILLED", mlflow_uri)  # only a RUNNING run is settled
    assert client.get_run(killed.run_id).info.status == "FAILED"


def test_a_record_of_another_store_is_not_reused(tmp_path, client):
    run_dir = tmp_path / "r5"
    run_dir.mkdir()
    (run_dir / RUN_RECORD).write_text(json.dumps({"run_id": "abc", "tracking_uri": "http://elsewhere:5000"}))
    tracker = Tracker(run_dir, "tracking-test", resumed_step=3)
    tracker.close()
    assert tracker.run_id != "abc" and client.get_run(tracker.run_id).info.status == "FINISHED"


def test_without_a_tracking_uri_only_the_jsonl_log_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker(tmp_path / "r6", "tracking-test")
    tracker.metrics(1, train_loss=1.0)
    tracker.close()
    assert tracker.client is None and not (tmp_path / "r6" / RUN_RECORD).exists()
    assert read_metrics(tmp_path / "r6")[0]["train_loss"] == 1.0
