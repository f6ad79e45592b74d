"""Every flow run as users run it: `fineforge server start`, `fineforge deploy`, then the Prefect UI's Run button
(the same API call) and a cron schedule; each run must COMPLETE with its outputs, artifacts and MLflow run."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.conversations import chat_conversations_config
from testkit.rl import write_digit_prompts
from testkit.services import api_error, fineforge, tiny_pipeline_parameters, tiny_pretrain_parameters
from testkit.shakespeare import write_shakespeare_shards
from testkit.token_corpus import DUMP, write_corpus

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WARC = "wget-2024-sample-0000.warc.gz"  # keeps documents under the default filters
RUN_SECONDS = 900
PRETRAIN_STEPS = 6
RL_STEPS = 2
SFT_STEPS = 2
DEPLOYMENTS = ("data_build/default", "tokenize/default", "pretrain/default", "sft/default", "interrogate/default",
               "rl/default", "collect_rankings/default", "reward_model/default", "quality_train/default",
               "quality_score/default", "pipeline/tiny")
HTML_TAG = re.compile(r"<[^>]*>")  # the UI renders descriptions as HTML: "<workdir>" disappears


def data_build_parameters(shared_data: Path, workdir: Path) -> dict:
    return {"config": {"input": str(shared_data / "warc" / WARC), "workdir": str(workdir),
                       "spark": {"master": "local[2]"}}}


@pytest.fixture(scope="module")
def deployed(fineforge_server, tmp_path_factory) -> tuple[Path, str]:
    """`fineforge deploy`, with relative run paths resolving in a temporary working directory."""
    working_dir = tmp_path_factory.mktemp("runs")
    result = fineforge("deploy", "--working-dir", str(working_dir), env=fineforge_server.env)
    assert result.returncode == 0, result.stdout + result.stderr
    return working_dir, result.stdout


@pytest.fixture(scope="module")
def runs(fineforge_server, deployed, shared_data, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One run of each deployment, started at once as presses of Run would (the worker runs them together)."""
    root = tmp_path_factory.mktemp("inputs")
    write_corpus(shared_data, root, with_bad=False)
    shards = write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", root / "shards", limit=100_000)
    parameters = {
        "data_build": data_build_parameters(shared_data, root / "built"),
        "tokenize": {"config": {"input": [str(root / DUMP / "scrubbed")], "workdir": str(root), "name": "bytes",
                                "tokenizer": "bytes", "val_fraction": 0.1, "spark": {"master": "local[2]"}}},
        "pretrain": tiny_pretrain_parameters(shards, root / "run", "deployments-test", PRETRAIN_STEPS),
        "rl": tiny_rl_parameters(root),
        "sft": tiny_sft_parameters(root),
        "pipeline": tiny_pipeline_parameters(shared_data, root / "pipeline"),
    }
    names = {name: f"{name}/{'tiny' if name == 'pipeline' else 'default'}" for name in parameters}
    started = {name: fineforge_server.run_deployment(names[name], p)["id"] for name, p in parameters.items()}
    return root, started


def tiny_rl_parameters(root: Path) -> dict:
    """`rl` flow parameters of the smallest RL run: a tiny random model, generated word-problem-style prompts."""
    return {"config": {"train": {
        "init_checkpoint": str(tiny_bytes_checkpoint(root / "rl-init")), "run_dir": str(root / "rl-run"),
        "prompts": str(write_digit_prompts(root / "rl-prompts.jsonl", 8)), "verifier": "word_problems",
        "experiment": "deployments-rl", "prompts_per_rollout": 2, "samples_per_prompt": 2, "micro_batch_size": 4,
        "max_new_tokens": 8, "max_steps": RL_STEPS, "eval_every": 0, "sample_every": RL_STEPS,
        "checkpoint_every": RL_STEPS,
    }, "launch": {"retries": 0}}}  # fmt: skip


def tiny_sft_parameters(root: Path) -> dict:
    """`sft` flow parameters of the smallest SFT run: identity conversations built first, a tiny random model."""
    conversations = chat_conversations_config(root / "sft-work", count=40, context_length=128)
    return {"config": {"conversations": conversations.model_dump(mode="json"), "train": {
        "data_dir": str(root / "sft-work" / "conversations" / conversations.name),  # the form requires it
        "init_checkpoint": str(tiny_bytes_checkpoint(root / "sft-init")), "run_dir": str(root / "sft-run"),
        "experiment": "deployments-sft", "micro_batch_size": 4, "max_steps": SFT_STEPS, "warmup_steps": 1,
        "eval_every": SFT_STEPS, "eval_batches": 1, "sample_every": SFT_STEPS, "sample_tokens": 8,
        "checkpoint_every": SFT_STEPS,
    }, "launch": {"retries": 0}}}  # fmt: skip


def completed(server, run_id: str) -> dict:
    run = server.wait_for_run(run_id, RUN_SECONDS)
    assert run["state"]["type"] == "COMPLETED", server.run_logs(run_id)
    return run


def test_deploy_registers_every_flow_for_the_process_worker(fineforge_server, deployed):
    working_dir, output = deployed
    for name in DEPLOYMENTS:
        deployment = fineforge_server.deployment(name)
        assert deployment["work_pool_name"] == "fineforge"
        assert deployment["entrypoint"].startswith("fineforge.flows.")  # a module path: no checkout needed
        assert deployment["job_variables"]["working_dir"] == str(working_dir)
        assert name in output
    pool = fineforge_server.api("GET", "/work_pools/fineforge")
    assert pool["type"] == "process"


def test_builds_run_one_at_a_time_weekly_on_a_cron_and_an_automation_can_start_tokenize(fineforge_server, deployed):
    """prefect.yaml's schedule, concurrency limit and trigger, as the server holds them after `fineforge deploy`."""
    weekly = fineforge_server.deployment("data_build/weekly")
    schedules = [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in weekly["schedules"]]
    assert schedules == [("0 3 * * 0", "UTC", False)]
    assert weekly["parameters"]["config"]["input"] == "latest"  # kept as the spec: each run resolves it
    for name in ("data_build/default", "data_build/weekly"):
        assert fineforge_server.deployment(name)["global_concurrency_limit"]["limit"] == 1, name
    automations = fineforge_server.api("POST", "/automations/filter", {})
    (automation,) = [a for a in automations if a["name"] == "tokenize-after-data-build"]
    assert automation["enabled"] is False
    assert automation["trigger"]["expect"] == ["prefect.flow-run.Completed"]
    related = automation["trigger"]["match_related"]
    assert {"prefect.resource.role": "flow", "prefect.resource.name": "data_build"} in (
        related if isinstance(related, list) else [related])
    (action,) = automation["actions"]
    assert action["type"] == "run-deployment"
    assert action["deployment_id"] == fineforge_server.deployment("tokenize/default")["id"]


def test_run_forms_carry_descriptions_defaults_bounds_and_enums(fineforge_server, deployed):
    schemas = {name: fineforge_server.deployment(name)["parameter_openapi_schema"] for name in DEPLOYMENTS}
    for name, schema in schemas.items():
        for model, field, prop in schema_properties(schema):
            assert prop.get("title") or "$ref" in prop, f"{name}: {model}.{field} has no title"
            assert not HTML_TAG.search(prop.get("description", "")), f"{name}: {model}.{field}: {prop['description']}"
    build = schemas["data_build/default"]["definitions"]
    assert build["DataBuildConfig"]["properties"]["input"]["description"]
    assert build["DataBuildConfig"]["properties"]["workdir"]["default"] == "work"
    assert {"exclusiveMinimum": 0, "type": "integer"} in build["DataBuildConfig"]["properties"]["limit"]["anyOf"]
    assert set(build["DedupConfig"]["properties"]["hash_fc"]["enum"]) == {"xxhash", "sha1"}
    tokens = schemas["tokenize/default"]["definitions"]["TokenizeConfig"]["properties"]
    assert tokens["dtype"]["enum"] == ["auto", "uint16", "uint32"]
    assert (tokens["val_fraction"]["minimum"], tokens["val_fraction"]["maximum"]) == (0, 1)
    launch = schemas["pretrain/default"]["definitions"]["LaunchConfig"]["properties"]
    assert launch["nproc_per_node"]["minimum"] == 1 and launch["nproc_per_node"]["description"]


def schema_properties(schema: dict):
    """(model, field, property) of every field of the schema and its definitions."""
    for model, definition in [("parameters", schema), *schema.get("definitions", {}).items()]:
        for field, prop in definition.get("properties", {}).items():
            yield model, field, prop


def test_data_build_run_from_the_ui_completes(fineforge_server, runs):
    root, started = runs
    completed(fineforge_server, started["data_build"])
    stats = json.loads((root / "built" / "local" / "scrubbed" / "stats.json").read_text())
    assert stats["stage"] == "scrubbed"
    artifacts = fineforge_server.artifacts(started["data_build"])
    rows = json.loads(artifacts["data-build-stats"]["data"])
    assert {row["stage"] for row in rows} >= {"filtered", "scrubbed"}
    mlflow = MlflowClient(tracking_uri=fineforge_server.mlflow_url)  # the worker's runs track to the server
    experiment = mlflow.get_experiment_by_name("fineforge-data-build")
    assert experiment is not None and mlflow.search_runs([experiment.experiment_id])


def test_tokenize_run_from_the_ui_completes(fineforge_server, runs):
    root, started = runs
    completed(fineforge_server, started["tokenize"])
    manifest = json.loads((root / "tokens" / "bytes" / "manifest.json").read_text())
    assert manifest["tokenizer"] == "bytes" and manifest["tokens"]["train"] > 0
    rows = json.loads(fineforge_server.artifacts(started["tokenize"])["tokens-bytes-stats"]["data"])  # <group>-<stage>
    assert rows


def test_pretrain_run_from_the_ui_completes_and_logs_to_the_mlflow_server(fineforge_server, runs):
    root, started = runs
    completed(fineforge_server, started["pretrain"])
    summary = fineforge_server.artifacts(started["pretrain"])["pretrain-summary"]["data"]
    run_id = re.search(r"MLflow run: `(\w+)`", summary).group(1)
    mlflow = MlflowClient(tracking_uri=fineforge_server.mlflow_url)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = {m.step for m in mlflow.get_metric_history(run_id, "train_loss")}
    assert steps == set(range(1, PRETRAIN_STEPS + 1))
    artifacts = {a.path for a in mlflow.list_artifacts(run_id, "checkpoint")}  # served by the MLflow server
    assert "checkpoint/model.safetensors" in artifacts
    assert (fineforge_server.home / "mlflow" / "artifacts").is_dir()


def test_pipeline_run_from_the_ui_completes_with_its_report_card_and_mlflow_lineage(fineforge_server, runs):
    root, started = runs
    completed(fineforge_server, started["pipeline"])
    report = fineforge_server.artifacts(started["pipeline"])["pipeline-report"]["data"]
    assert report == (root / "pipeline" / "report.md").read_text()
    links = re.findall(r"\]\((http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/(\w+))\)", report)
    assert len(links) == 4  # the pipeline's run and one per stage, in the MLflow UI of the server
    mlflow = MlflowClient(tracking_uri=fineforge_server.mlflow_url)
    parent, *children = (mlflow.get_run(run_id) for _, run_id in links)
    assert all(child.data.tags["mlflow.parentRunId"] == parent.info.run_id for child in children)
    assert parent.data.tags["prefect.flow_run_id"] == started["pipeline"]
    assert parent.data.tags["prefect.flow_run_url"].endswith(f"/runs/flow-run/{started['pipeline']}")
    version = mlflow.get_model_version_by_alias("fineforge", "latest-pretrain")
    assert version.run_id == children[-1].info.run_id


def test_rl_run_from_the_ui_completes_and_logs_to_the_mlflow_server(fineforge_server, runs):
    root, started = runs
    completed(fineforge_server, started["rl"])
    summary = fineforge_server.artifacts(started["rl"])["rl-summary"]["data"]
    assert "| verifier | word_problems |" in summary
    run_id = re.search(r"MLflow run: `(\w+)`", summary).group(1)
    mlflow = MlflowClient(tracking_uri=fineforge_server.mlflow_url)
    assert mlflow.get_run(run_id).data.tags["fineforge.stage"] == "rl"
    assert [m.step for m in mlflow.get_metric_history(run_id, "reward_mean")] == list(range(1, RL_STEPS + 1))
    assert f"samples/step_{RL_STEPS:08d}.txt" in {a.path for a in mlflow.list_artifacts(run_id, "samples")}


def test_sft_run_from_the_ui_builds_its_conversations_and_trains(fineforge_server, runs):
    root, started = runs
    completed(fineforge_server, started["sft"])
    assert (root / "sft-work" / "conversations" / "chat" / "stats.json").is_file()  # built first, in the flow
    summary = fineforge_server.artifacts(started["sft"])["sft-summary"]["data"]
    run_id = re.search(r"MLflow run: `(\w+)`", summary).group(1)
    assert f"| step | {SFT_STEPS} |" in summary
    run = MlflowClient(tracking_uri=fineforge_server.mlflow_url).get_run(run_id)
    assert run.data.tags["fineforge.stage"] == "sft" and "train_loss" in run.data.metrics


def test_a_bad_parameter_fails_at_once_with_the_reason_in_the_run_log(fineforge_server, deployed, shared_data,
                                                                       tmp_path):
    parameters = data_build_parameters(shared_data, tmp_path)
    parameters["config"]["filters"] = {"language": {"languages": []}}  # valid JSON for the form, not for the config
    run = fineforge_server.run_deployment("data_build/default", parameters)
    finished = fineforge_server.wait_for_run(run["id"], RUN_SECONDS)
    assert finished["state"]["type"] == "FAILED"
    logs = fineforge_server.wait_for_log(run["id"], "give at least one language code")
    assert "config.filters.language.languages: Value error, give at least one language code" in logs, logs
    tasks = fineforge_server.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    assert tasks == []  # no work started
    assert not (tmp_path / "local").exists()

    parameters["config"]["filters"] = {}
    parameters["config"]["limit"] = 0  # the form's own bounds: refused before a run exists
    code, body = api_error(lambda: fineforge_server.run_deployment("data_build/default", parameters))
    assert code in (409, 422) and "limit" in body


def test_a_cron_schedule_fires_runs_that_complete(fineforge_server, runs, shared_data, tmp_path):
    """`fineforge data schedule` every minute: the server's scheduler plans the run, the worker runs it."""
    root, started = runs
    completed(fineforge_server, started["data_build"])  # same config: the scheduled run finds the stages complete
    config = tmp_path / "build.json"
    config.write_text(json.dumps(data_build_parameters(shared_data, root / "built")["config"]))
    result = fineforge("data", "schedule", "--config", str(config), "--cron", "* * * * *", "--timezone", "UTC",
                       "--name", "every-minute", env=fineforge_server.env)
    assert result.returncode == 0, result.stdout + result.stderr
    deployment = fineforge_server.deployment("data_build/every-minute")
    schedules = [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in deployment["schedules"]]
    assert schedules == [("* * * * *", "UTC")]
    assert deployment["global_concurrency_limit"]["limit"] == 1  # a run due while the last one runs waits
    try:
        run = wait_for_scheduled_run(fineforge_server, deployment["id"])
        finished = completed(fineforge_server, run["id"])
        assert finished["auto_scheduled"] and finished["expected_start_time"].endswith(":00Z")
    finally:
        fineforge_server.api("DELETE", f"/deployments/{deployment['id']}")


def wait_for_scheduled_run(server, deployment_id: str, seconds: float = 240) -> dict:
    """The first run the scheduler created for the deployment that a worker picked up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = server.api("POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}},
                                                         "sort": "EXPECTED_START_TIME_ASC"})
        picked = [run for run in found if run["state"]["type"] != "SCHEDULED"]
        if picked:
            return picked[0]
        time.sleep(2)
    raise AssertionError(f"no scheduled run of {deployment_id} started within {seconds} s")


def test_prefect_deploy_all_reads_the_same_prefect_yaml(fineforge_server, deployed):
    """Prefect's own `prefect deploy --all`, from the repository root, registers the same deployments."""
    prefect = Path(sys.executable).with_name("prefect")
    result = subprocess.run([str(prefect), "--no-prompt", "deploy", "--all"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, **fineforge_server.env, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    for name in DEPLOYMENTS:
        assert fineforge_server.deployment(name)["entrypoint"].startswith("fineforge.flows.")
