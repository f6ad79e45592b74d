"""`fineforge quality train|score` end to end: real Prefect flow runs, a real MLflow store, real Spark, real text."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from testkit.quality import small_train_config
from testkit.token_corpus import DUMP, write_corpus

runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(shared_data, spark, tmp_path_factory):
    """A build of real web text (testkit.token_corpus), a classifier trained on it and the build scored, by the CLI."""
    workdir = tmp_path_factory.mktemp("quality-cli")
    write_corpus(shared_data, workdir, with_bad=False)
    config = workdir / "quality.json"
    config.write_text(json.dumps(small_train_config(shared_data, workdir, mlflow=True)))
    with pytest.MonkeyPatch.context() as env:  # the store the commands default to: an earlier command's may linger
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
        trained = runner.invoke(app, ["quality", "train", "--config", str(config), "--threshold", "0.6"])
        assert trained.exit_code == 0, trained.output
        scored = runner.invoke(app, ["quality", "score", "--workdir", str(workdir), "--examples", "4",
                                     "--spark-master", "local[2]"])
    assert scored.exit_code == 0, scored.output
    return workdir, trained.output, scored.output


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert artifacts, f"no artifact {key}"
    return artifacts[-1].data


def test_train_prints_and_publishes_held_out_precision_and_recall(workdir):
    workdir, printed, _ = workdir
    report = json.loads((workdir / "quality" / "classifier" / "report.json").read_text())
    assert report["threshold"] == 0.6  # the option overrode the config file
    assert f"precision {report['precision']}" in printed and "classifier in" in printed
    markdown = _artifact("quality-classifier")
    assert f"F1 **{report['f1']:.3f}**" in markdown and "| 0.6 |" in markdown

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fineforge-quality"], output_format="list")
    (run,) = [run for run in runs if run.info.run_name == "quality_train classifier"]
    assert run.data.metrics["quality/classifier/f1"] == pytest.approx(report["f1"])
    listed = mlflow.artifacts.list_artifacts(run_id=run.info.run_id, artifact_path="quality/classifier")
    logged = {artifact.path for artifact in listed}
    assert {"quality/classifier/model.bin", "quality/classifier/report.json"} <= logged


def test_score_publishes_kept_documents_histogram_and_examples(workdir):
    workdir, _, printed = workdir
    stats = json.loads((workdir / DUMP / "quality_filtered" / "stats.json").read_text())
    kept, documents = stats["documents_out"], stats["documents_in"]
    assert 0 < documents and str(documents) in printed and str(kept) in printed
    markdown = _artifact("quality-filter")
    assert f"| {DUMP} | {documents} | {kept} | {documents - kept} |" in markdown
    for score_bin, count in stats["score_histogram"].items():
        assert f"| {score_bin} | {count} |" in markdown
    examples = json.loads((workdir / DUMP / "quality_filtered" / "examples.json").read_text())
    assert len(examples["top"]) == len(examples["bottom"]) == 4
    assert f"{examples['top'][0]['score']:.3f}" in markdown.split("## Lowest scores")[0]


def test_a_wrong_option_fails_naming_the_field(workdir):
    workdir, _, _ = workdir
    result = runner.invoke(app, ["quality", "score", "--workdir", str(workdir), "--threshold", "2"])
    assert result.exit_code == 2 and "threshold" in result.output
    result = runner.invoke(app, ["quality", "train", "--workdir", str(workdir), "--positives", "gsm8k"])
    assert result.exit_code == 2 and "KIND:PATH" in result.output
