"""`fineforge train rl`: the rl flow run from the command line (torchrun, the RL stage, a real MLflow store), and
bad input refused in one line before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.model.checkpoint import CHECKPOINTS_SUBDIR, META_FILE, latest_checkpoint
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.rl import write_digit_prompts
from testkit.services import fineforge

ROOT = Path(__file__).resolve().parents[2]
STEPS = 2


def test_train_rl_runs_the_flow_and_tracks_it(tmp_path, mlflow_uri):
    init = tiny_bytes_checkpoint(tmp_path / "init")
    prompts = write_digit_prompts(tmp_path / "prompts.jsonl", 8)
    config = tmp_path / "rl.json"
    config.write_text(json.dumps({"prompts_per_rollout": 2, "samples_per_prompt": 4, "micro_batch_size": 8,
                                  "max_new_tokens": 8, "eval_every": 0, "sample_every": STEPS,
                                  "checkpoint_every": STEPS, "format_weight": 1.0, "experiment": "rl-cli"}))
    run_dir = tmp_path / "run"
    result = fineforge("train", "rl", "--checkpoint", str(init), "--prompts", str(prompts), "--verifier",
                       "testkit.rl:DIGITS", "--run-dir", str(run_dir), "--config", str(config), "--max-steps",
                       str(STEPS), "--set", "lr=1e-3", env={"OMP_NUM_THREADS": "1"}, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " rl " in result.stdout and "mlflow_run_id" in result.stdout  # the result table

    meta = json.loads((latest_checkpoint(run_dir / CHECKPOINTS_SUBDIR) / META_FILE).read_text())
    assert meta["stage"] == "rl" and meta["step"] == STEPS
    client = MlflowClient(tracking_uri=mlflow_uri)
    [run] = client.search_runs([client.get_experiment_by_name("rl-cli").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["fineforge.stage"] == "rl"
    assert run.data.params["verifier"] == "testkit.rl:DIGITS" and run.data.params["lr"] == "0.001"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "reward_mean")] == list(range(1, STEPS + 1))


def test_train_rl_refuses_bad_input_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("FINEFORGE_TOKENIZER_DIR", raising=False)
    init = tiny_bytes_checkpoint(tmp_path / "init")
    prompts = write_digit_prompts(tmp_path / "prompts.jsonl", 8)
    no_answers = tmp_path / "no_answers.jsonl"
    no_answers.write_text(json.dumps({"id": "q", "question": "1 + 1?"}) + "\n")
    run = ["--checkpoint", str(init), "--run-dir", str(tmp_path / "r"), "--set", "max_new_tokens=16"]
    cases = [
        ([*run], "--prompts is required"),
        (["--prompts", str(prompts), "--run-dir", str(tmp_path / "r")], "--checkpoint is required"),
        ([*run, "--prompts", str(prompts), "--verifier", "nope"], "field 'verifier': unknown verifier 'nope'"),
        ([*run, "--prompts", str(no_answers)], "1 of 1 prompts lack what verifier 'gsm8k' needs"),
        ([*run, "--prompts", str(prompts), "--set", "samples_per_prompt=0"], "'samples_per_prompt': must be > 0"),
        ([*run, "--prompts", str(prompts), "-n", "3"], "16 prompts do not split over 3 ranks"),
        ([*run, "--prompts", str(prompts), "--config", str(tmp_path / "none.json")], "config file not found"),
        ([*run, "--prompts", str(prompts), "--checkpoint", str(tmp_path / "none")], "field 'init_checkpoint'"),
    ]
    runner = CliRunner()
    for args, message in cases:
        result = runner.invoke(app, ["train", "rl", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.output)
    assert not (tmp_path / "r").exists()  # no run folder, no MLflow store, nothing launched
