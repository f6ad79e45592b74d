"""The `pipeline` flow end to end, as a user runs it: `fineforge pipeline run` with the tiny preset on real WARCs
(its own process: Prefect's temporary API, a local Spark session, torchrun, a real MLflow store), twice: the
second run skips every stage and still writes a report card. Then the lineage in MLflow."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.flows.deploy import PREFECT_FILE
from fineforge.tasks.training.completion import RunDirInUse, claim_run_dir, completed_training, training_inputs
from testkit.services import fineforge

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "configs" / "pipeline-tiny.json"
WARCS = "wget-2024-sample-*.warc.gz"
STAGES = ["data_build", "tokenize", "pretrain"]
PARENT_TAG = "mlflow.parentRunId"
runner = CliRunner()


def pipeline_run(shared_data: Path, workdir: Path, uri: str, *settings: str):
    """`fineforge pipeline run` with the tiny preset on the shared WARCs; the finished process."""
    options = [option for setting in settings for option in ("--set", setting)]
    return fineforge("pipeline", "run", "--config", str(PRESET), "--input", str(shared_data / "warc" / WARCS),
                     "--workdir", str(workdir), "--mlflow-uri", uri, *options,
                     env={"OMP_NUM_THREADS": "1", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5"})


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory, mlflow_store_template) -> dict:
    """Two runs of the tiny pipeline in one work dir, the report card of each, and the MLflow store."""
    root = tmp_path_factory.mktemp("pipeline")
    shutil.copyfile(mlflow_store_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    workdir = root / "work"
    outputs, reports = [], []
    for _ in range(2):
        result = pipeline_run(shared_data, workdir, uri)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
        reports.append((workdir / "report.md").read_text())
    return {"workdir": workdir, "uri": uri, "outputs": outputs, "reports": reports}


def parent_run_id(output: str) -> str:
    return re.search(r"MLflow pipeline run: (\w+)", output).group(1)


def stage_rows(output: str) -> dict[str, str]:
    """The printed stage table: stage -> status."""
    return {m.group(1): m.group(2) for m in re.finditer(r"(data_build|tokenize|pretrain)\s+│\s+(ran|skipped)", output)}


def test_the_first_run_runs_every_stage_and_its_report_card_holds_the_numbers(runs):
    assert stage_rows(runs["outputs"][0]) == dict.fromkeys(STAGES, "ran")
    report, workdir = runs["reports"][0], runs["workdir"]
    manifest = json.loads((workdir / "tokens" / "tiny" / "manifest.json").read_text())
    summary = json.loads((workdir / "runs" / "pretrain" / "summary.json").read_text())
    scrubbed = json.loads((workdir / "tiny" / "scrubbed" / "stats.json").read_text())
    for section in ("## Stages", "## Data", "## Tokens", "## Model", "## Samples"):
        assert section in report
    assert f"| tokens | {sum(manifest['tokens'].values()):,} |" in report
    assert f"| num_parameters | {summary['num_parameters']:,} |" in report
    assert f"| step | {summary['step']} |" in report and summary["step"] == 10
    assert re.search(rf"\| tiny \| scrubbed \| [\d,]+ \| {scrubbed['documents_out']:,} \|", report)
    assert "--- prompt:" in report  # the last samples
    for stage in STAGES:  # every stage ran, with its wall and CPU time and its MLflow run
        row = re.search(rf"^\| {stage} \| ran \| ([\d.,]+) \| ([\d.,]+) \| `(\w+)`", report, re.M)
        assert row and float(row.group(1).replace(",", "")) > 0 and float(row.group(2).replace(",", "")) > 0


def test_the_second_run_skips_every_stage_and_still_writes_a_report_card(runs):
    assert stage_rows(runs["outputs"][1]) == dict.fromkeys(STAGES, "skipped")
    first, second = runs["reports"]
    assert parent_run_id(runs["outputs"][1]) in second and parent_run_id(runs["outputs"][0]) not in second
    assert re.search(r"^\| pretrain \| skipped \(complete\) \| 0 \| 0 \|", second, re.M)
    model = lambda report: report.split("## Model")[1]  # noqa: E731
    assert model(first) == model(second)  # the same trained model, reported again


def test_every_run_is_linked_in_mlflow(runs):
    client = MlflowClient(runs["uri"])
    first, second = (parent_run_id(output) for output in runs["outputs"])
    parent = client.get_run(first)
    assert parent.info.status == "FINISHED" and parent.data.tags.get("prefect.flow_run_id")
    assert {a.path for a in client.list_artifacts(first)} >= {"report.md", "config.json"}
    assert parent.data.params["pretrain.train.max_steps"] == "10"

    children = {run.data.tags.get("fineforge.stage", run.info.run_name.split()[0]): run
                for run in children_of(client, first)}
    assert set(children) == {"data_build", "tokenize", "pretrain"}
    for run in children.values():
        assert run.info.status == "FINISHED" and run.data.tags["prefect.flow_run_id"] != parent.data.tags[
            "prefect.flow_run_id"]  # each stage's own (sub)flow run
    tokenize = children["tokenize"]
    assert tokenize.data.metrics["tokens/tiny/tokens"] > 0
    assert {"tokens/tiny/stats.json", "tokens/tiny/manifest.json"} <= artifact_paths(client, tokenize, "tokens/tiny")

    training = children["pretrain"]
    assert_token_dataset(training, runs["workdir"])
    version = client.get_model_version_by_alias("fineforge", "latest-pretrain")
    assert version.run_id == training.info.run_id
    assert "data/manifest.json" in artifact_paths(client, training, "data")

    second_children = {run.info.run_id for run in children_of(client, second)}
    assert len(second_children) == 2 and training.info.run_id not in second_children  # skipped: not re-parented


def children_of(client: MlflowClient, parent: str) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`{PARENT_TAG}` = '{parent}'")


def artifact_paths(client: MlflowClient, run, path: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run.info.run_id, path)}


def assert_token_dataset(training, workdir: Path) -> None:
    """The training run's input: the token shards, by the manifest's digest, naming the corpus they came from."""
    tokens = workdir / "tokens" / "tiny"
    (dataset_input,) = training.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.digest == hashlib.sha256((tokens / "manifest.json").read_bytes()).hexdigest()[:32]
    assert json.loads(dataset.source)["uri"].endswith(str(tokens))
    assert [(t.key, t.value) for t in dataset_input.tags] == [("mlflow.data.context", "train")]
    corpus = json.loads(dataset.profile)["corpus"]
    scrubbed = json.loads((workdir / "tiny" / "scrubbed" / "stats.json").read_text())
    assert corpus == {str((workdir / "tiny" / "scrubbed").resolve()): scrubbed["fingerprint"]}


@pytest.mark.parametrize(("setting", "message"), [
    ("pretrain.train.max_steps=0", "pretrain config field 'max_steps': must be > 0"),
    ("pretrain.train.tokens_per_step=100", "'tokens_per_step': 100 is not a multiple of micro_batch_size x seq_len"),
    ("tokenize.workdir=elsewhere", "tokenize.workdir: set by the pipeline's own workdir"),
    ("pretrain.train.data_dir=elsewhere", "pretrain.train.data_dir: set by the pipeline"),
    ("tokenize.tokenizer=nope", "tokenize: tokenizer: unknown tokenizer 'nope'"),
])
def test_a_wrong_config_fails_before_any_work_naming_the_field(shared_data, tmp_path, setting, message):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["pipeline", "run", "--config", str(PRESET), "--input", str(shared_data / "warc"),
                                 "--workdir", str(tmp_path / "work"), "--mlflow-uri", uri, "--set", setting])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "work").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_run_folder_of_training_on_other_shards_is_refused_and_kept(tmp_path):
    run_dir = tmp_path / "run"
    first = training_inputs({"max_steps": 3}, "tokens-a")
    claim_run_dir(run_dir, first)
    (run_dir / "checkpoints" / "step_00000003").mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"step": 3}))
    assert completed_training(run_dir, first) == {"step": 3}
    assert completed_training(run_dir, training_inputs({"max_steps": 4}, "tokens-a")) is None  # more steps: resume
    claim_run_dir(run_dir, training_inputs({"max_steps": 4}, "tokens-a"))
    with pytest.raises(RunDirInUse, match="holds a training run on other token shards"):
        claim_run_dir(run_dir, training_inputs({"max_steps": 4}, "tokens-b"))
    assert (run_dir / "checkpoints" / "step_00000003").is_dir()


def test_the_pipeline_deployment_runs_the_tiny_preset():
    deployments = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    (tiny,) = [d for d in deployments if d["entrypoint"] == "fineforge.flows.pipeline:pipeline"]
    assert tiny["name"] == "tiny" and tiny["parameters"] == {"config": json.loads(PRESET.read_text())}
