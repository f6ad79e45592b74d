"""`fineforge reward pairs`, `fineforge train reward` (the `reward_model` Prefect flow, torchrun, a real MLflow store)
and `fineforge reward score`, as a user runs them; bad input refused in one line before anything starts."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fineforge.flows.cli import app
from testkit.preferences import untrained_checkpoint, write_rule_rankings

MAX_STEPS = 12
BLOCK_SIZE = 96


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """An untrained trunk, keyword-rule rankings and their preference set built through the CLI."""
    work = tmp_path_factory.mktemp("reward-cli")
    trunk = untrained_checkpoint(work / "trunk", block_size=BLOCK_SIZE, n_layer=1, n_embd=32)
    rankings = write_rule_rankings(work / "rankings.jsonl", "keyword", 200)
    result = CliRunner().invoke(app, ["reward", "pairs", "--rankings", str(rankings), "--output", str(work / "set"),
                                      "--checkpoint", str(trunk), "--heldout-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    assert "heldout pairs" in result.output and "longest row (tokens)" in result.output
    return work, trunk, work / "set"


def test_train_reward_runs_the_flow_into_mlflow_and_scores_replies(inputs, tmp_path, mlflow_uri, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _, trunk, data = inputs
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "reward", "--data", str(data), "--checkpoint", str(trunk), "--run-dir", str(run_dir),
        "--max-steps", str(MAX_STEPS), "--set", "lr=3e-3", "--set", "warmup_steps=2", "--set", "micro_batch_size=16",
        "--set", "eval_every=6", "--set", "sample_every=12", "--set", "checkpoint_every=6",
        "--set", "experiment=reward-test", "--mlflow-uri", mlflow_uri,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "heldout_accuracy" in result.output and "mlflow_run_id" in result.output

    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("reward-test").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["fineforge.stage"] == "reward"
    assert run.data.params["pairing"] == "all" and run.data.params["model.reward_head"] == "linear"
    history = client.get_metric_history(run.info.run_id, "heldout_accuracy")
    assert [m.step for m in history] == [6, 12] and history[-1].value >= 0.75  # chance: 0.5
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.data.metrics["heldout_margin"] == summary["heldout_margin"]
    checkpoint = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert {"checkpoint/model.safetensors", "checkpoint/meta.json"} <= checkpoint
    manifest = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/preference_set/manifest.json")
    assert manifest["counts"] == json.loads((data / "manifest.json").read_text())["counts"]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as prefect:
        key = ArtifactFilterKey(any_=["reward-model-summary"])
        (artifact,) = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert f"| heldout_accuracy | {summary['heldout_accuracy']} |" in artifact.data
    assert f"| heldout pairs | {manifest['counts']['heldout']['pairs']} |" in artifact.data
    assert run.info.run_id in artifact.data

    # the trained model prefers the rule's replies, in a table and as JSON lines
    prompt = ["reward", "score", "-c", str(run_dir), "--prompt", "Tell me about the old river."]
    replies = ["--reply", "Gladly the river is old and slow.", "--reply", "The river is old and slow, never."]
    table = CliRunner().invoke(app, [*prompt, *replies])
    assert table.exit_code == 0 and "reward model scores" in table.output and "Gladly the river" in table.output
    lines = CliRunner().invoke(app, [*prompt, *replies, "--json"]).output.strip().splitlines()
    scores = [json.loads(line)["score"] for line in lines]
    assert len(scores) == 2 and scores[0] > scores[1]

    replies_file = tmp_path / "replies.jsonl"
    replies_file.write_text(json.dumps({"reply": "Gladly."}) + "\n" + json.dumps(
        {"prompt": [{"role": "user", "content": "Hi"}], "reply": "Never."}) + "\n")
    from_file = CliRunner().invoke(app, [*prompt, "--replies", str(replies_file), "--json"])
    assert [json.loads(line)["reply"] for line in from_file.output.strip().splitlines()] == ["Gladly.", "Never."]


def one_error_line(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (args, result.output)
    return lines[0]


def test_bad_input_is_one_line_before_anything_starts(inputs, shared_data, tmp_path):
    work, trunk, data = inputs
    run = ["--run-dir", str(tmp_path / "r")]
    gpt2_set = tmp_path / "gpt2-set"
    result = CliRunner().invoke(app, ["reward", "pairs", "--rankings", str(work / "rankings.jsonl"), "--output",
                                      str(gpt2_set), "--tokenizer", "gpt2", "--max-length", str(BLOCK_SIZE),
                                      "--tokenizer-dir", str(shared_data / "tokenizers")])
    assert result.exit_code == 0, result.output
    cases = [
        (["--data", str(data), *run], "--checkpoint is required"),
        (["--data", str(gpt2_set), "--checkpoint", str(trunk), *run], "was tokenized with 'gpt2' (50266 ids)"),
        (["--data", str(tmp_path), "--checkpoint", str(trunk), *run], "no manifest.json"),
        (["--data", str(data), "--checkpoint", str(tmp_path), *run], "'init_checkpoint': "),
        (["--data", str(data), "--checkpoint", str(trunk), *run, "--set", "pairing=some"], "field 'pairing'"),
        (["--data", str(data), "--checkpoint", str(trunk), *run, "--set", "margin=-1"], "field 'margin': must be >= 0"),
        (["--data", str(data), "--checkpoint", str(trunk), *run, "-n", "0"], "nproc_per_node"),
    ]
    for args, message in cases:
        assert message in one_error_line(["train", "reward", *args]), args
    assert not (tmp_path / "r").exists()  # no run folder, no MLflow store, nothing launched

    pairs = ["reward", "pairs", "--rankings", str(work / "rankings.jsonl"), "--output", str(tmp_path / "s")]
    assert "max_length: Field required" in one_error_line([*pairs, "--tokenizer", "bytes"])
    assert "rankings file not found" in one_error_line([*pairs[:2], "--rankings", str(tmp_path / "none.jsonl"),
                                                        *pairs[4:], "--checkpoint", str(trunk)])
    assert "holds a preference set of other rankings" in one_error_line(
        ["reward", "pairs", "--rankings", str(work / "rankings.jsonl"), "--output", str(data), "--checkpoint",
         str(trunk), "--max-length", "64"])
    assert "a pretrain checkpoint, not a reward model" in one_error_line(
        ["reward", "score", "-c", str(trunk), "--prompt", "Hi", "--reply", "Hello."])
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"reply": "ok"}\n{"reply": 3}\n')
    assert "bad.jsonl line 2: expected an object with a text 'reply'" in one_error_line(
        ["reward", "score", "-c", str(trunk), "--prompt", "Hi", "--replies", str(bad_file)])
