"""`fineforge train sft` and the `sft` flow end to end: the conversations built first by the real stage, torchrun,
a real MLflow store (the conversation set as the run's input) and the Prefect summary artifact; bad input gets
one error line before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.model.checkpoint import load_model
from fineforge.model.shards import MANIFEST, file_sha256
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.conversations import chat_conversations_config

MAX_STEPS = 6
SMALL = {"n_layer": 2, "n_head": 2, "n_embd": 32}
runner = CliRunner()


def write_json(path: Path, values: dict) -> Path:
    path.write_text(json.dumps(values))
    return path


def test_train_sft_builds_conversations_trains_and_tracks(tmp_path, mlflow_uri, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    init = tiny_bytes_checkpoint(tmp_path / "pretrained", block_size=160, **SMALL)
    conversations = write_json(tmp_path / "conversations.json",
                               chat_conversations_config(tmp_path / "work").model_dump(mode="json"))
    run_dir = tmp_path / "run"
    settings = {"micro_batch_size": 4, "row_multiple": 16, "warmup_steps": 1, "eval_every": 3, "eval_batches": 2,
                "sample_every": 3, "sample_tokens": 8, "checkpoint_every": 3, "experiment": "sft-test"}
    result = runner.invoke(app, [
        "train", "sft", "--init", str(init), "--conversations", str(conversations), "--run-dir", str(run_dir),
        "--max-steps", str(MAX_STEPS), "--mlflow-uri", mlflow_uri, "--retries", "0",
        *[f"--set={k}={json.dumps(v)}" for k, v in settings.items()],
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data_dir = tmp_path / "work" / "conversations" / "chat"
    assert (data_dir / "stats.json").is_file()  # the conversation stage ran first
    _, meta = load_model(run_dir)
    assert meta["stage"] == "sft" and meta["step"] == MAX_STEPS

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sft-summary"])))
        stage_stats = client.read_artifacts(  # the conversation stage ran as a stage task, with its statistics
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["conversations-chat-stats"])))
    assert artifacts and "| val_loss |" in artifacts[-1].data and "| conversations train |" in artifacts[-1].data
    assert stage_stats

    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sft-test").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["fineforge.stage"] == "sft"
    assert {"train_loss", "val_loss", "tokens_per_s", "lr", "grad_norm"} <= set(run.data.metrics)
    assert run.data.params["init_checkpoint"] == str(init) and run.data.params["model.n_layer"] == "2"
    digest = file_sha256(data_dir / MANIFEST)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "chat" and digest.startswith(dataset_input.dataset.digest)
    assert json.loads(dataset_input.dataset.source)["uri"] == str(data_dir.resolve())
    assert json.loads(dataset_input.dataset.profile)["documents"]["train"] > 0
    assert run.data.tags["fineforge.data.training.digest"] == digest
    manifest = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data/training/{MANIFEST}")
    assert manifest["kind"] == "conversations"
    samples = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/samples/step_{MAX_STEPS:08d}.txt")
    assert samples.startswith("--- user: Who are you?")
    assert {"checkpoint/model.safetensors", "checkpoint/meta.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}


def test_train_sft_refuses_bad_input(tmp_path, shared_data):
    init = tiny_bytes_checkpoint(tmp_path / "pretrained", block_size=160, **SMALL)
    good = chat_conversations_config(tmp_path / "work").model_dump(mode="json")
    run = ["--init", str(init), "--run-dir", str(tmp_path / "r")]
    conversations = ["--conversations", str(tmp_path / "c.json")]
    cases = [
        ({**good, "context_length": 400}, [*run, *conversations],
         "conversations config field 'context_length': 400 tokens do not fit the context of"),
        ({**good, "tokenizer": "gpt2", "vocab_dir": str(shared_data / "tokenizers")}, [*run, *conversations],
         "tokenizer 'bytes' (266 ids), the conversations with 'gpt2' (50266 ids)"),
        ({**good, "sources": [{"kind": "identity"}]}, [*run, *conversations], "sources.0.identity.assistant_name"),
        (good, [*run, *conversations, "--data", str(tmp_path / "elsewhere")],
         "'data_dir': " + str(tmp_path / "elsewhere") + " is not the folder of the conversations built first"),
        (good, ["--run-dir", str(tmp_path / "r"), *conversations], "--init is required"),
        (good, run, "--data or --conversations is required"),
        (good, [*run, "--data", str(tmp_path / "none")], "no manifest.json"),
        (good, [*run, *conversations, "--set", "micro_batch_size=0"], "field 'micro_batch_size': must be > 0"),
        (good, [*run, "--init", str(tmp_path / "none"), *conversations], "'init_checkpoint'"),
    ]
    for values, args, message in cases:
        write_json(tmp_path / "c.json", values)
        result = runner.invoke(app, ["train", "sft", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (message, result.output)
    assert not (tmp_path / "r").exists() and not (tmp_path / "work").exists()  # nothing built, nothing launched
