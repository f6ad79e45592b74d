"""The data build end to end: the `fineforge` command runs the real Prefect flow on a real local Spark session
over real WARCs, as a user runs it (its own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.sample.documents import keep

SAMPLES = [
    "cc-main-2020-34-slice.warc.gz",
    "cc-main-2014-35-sample.warc",
    "wget-2024-sample-0000.warc.gz",
    "wget-2024-sample-0001.warc.gz",
]
SAMPLE_FRACTION = 0.5
STAGES = ("filtered", "deduplicated", "scrubbed", "sampled")
runner = CliRunner()


def fineforge(*args: str) -> str:
    """Run the `fineforge` command in its own process; return its output."""
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=900,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data):
    """One build (embedded defaults: Prefect temporary API, MLflow SQLite in the work dir)."""
    tmp = tmp_path_factory.mktemp("build")
    listing = tmp / "warcs.txt"
    listing.write_text("\n".join(str(shared_data / "warc" / name) for name in SAMPLES) + "\n")
    workdir = tmp / "work"
    output = fineforge("data", "build", "--input", str(listing), "--workdir", str(workdir), "--dump", "samples",
                       "--spark-master", "local[2]", "--sample-fraction", str(SAMPLE_FRACTION))
    return workdir, output


def read_parts(directory: Path, columns: list[str] | None = None):
    """All Parquet parts of a stage folder (which also holds stats.json)."""
    return pq.read_table(sorted(directory.glob("*.parquet")), columns=columns)


def read_stats(workdir: Path, dump: str, stage: str) -> dict:
    return json.loads((workdir / dump / stage / "stats.json").read_text())


def dumps(workdir: Path) -> list[str]:
    """The dumps of the build: the folders with a filtered stage (beside them: mlflow.db, mlartifacts, .prefect)."""
    return sorted(p.parent.name for p in workdir.glob("*/filtered"))


def test_build_writes_documents_and_consistent_statistics(built):
    workdir, output = built
    assert "data build statistics" in output
    total_out = 0
    for dump in dumps(workdir):
        filtered = read_stats(workdir, dump, "filtered")
        scrubbed = read_stats(workdir, dump, "scrubbed")
        assert filtered["documents_in"] >= filtered["documents_out"]
        assert filtered["documents_in"] - sum(
            v for k, v in filtered["dropped"].items() if k not in ("corrupt_record", "unreadable_file")
        ) == filtered["documents_out"]
        previous_out = None
        for step in filtered["steps"]:
            if previous_out is not None:
                assert step["documents_in"] == previous_out, step
            previous_out = step["documents_out"]
        deduplicated = read_stats(workdir, dump, "deduplicated")
        assert deduplicated["documents_in"] == filtered["documents_out"]
        assert deduplicated["documents_out"] + sum(deduplicated["dropped"].values()) == deduplicated["documents_in"]
        assert scrubbed["documents_in"] == deduplicated["documents_out"] == scrubbed["documents_out"]
        table = read_parts(workdir / dump / "scrubbed")
        assert table.num_rows == scrubbed["documents_out"]
        sampled = read_parts(workdir / dump / "sampled")
        assert sampled.column("id").to_pylist() == [i for i in table.column("id").to_pylist()
                                                     if keep(i, SAMPLE_FRACTION)]
        assert read_stats(workdir, dump, "sampled")["documents_in"] == scrubbed["documents_out"]
        total_out += table.num_rows
        for row in table.to_pylist():
            assert row["language"] == "en" and row["language_score"] >= 0.65
            assert row["text"].strip() and row["url"].startswith("http")
            assert Path(row["warc_file"]).name in SAMPLES and row["warc_offset"] >= 0
    assert total_out > 0


def test_pii_is_scrubbed(built):
    workdir, _ = built
    import re

    email = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
    replacements = {"email@example.com", "firstname.lastname@example.org"}  # datatrove's PIIFormatter
    changed = 0
    for dump in dumps(workdir):
        before = dict(zip(*read_parts(workdir / dump / "filtered", ["id", "text"]).columns, strict=True))
        for doc_id, text in zip(*read_parts(workdir / dump / "scrubbed", ["id", "text"]).columns, strict=True):
            assert set(email.findall(text.as_py())) <= replacements
            original = before[doc_id].as_py()
            if set(email.findall(original)) - replacements:
                assert text.as_py() != original
                changed += 1
    assert changed > 0, "the samples hold e-mail addresses: some document must have been scrubbed"


def test_statistics_reach_prefect_and_mlflow(built):
    workdir, _ = built
    import mlflow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=["data-build-stats"])
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert artifacts, "no stats table artifact"
    rows = json.loads(artifacts[-1].data)
    assert any(r["metric"] == "documents_out" and r["stage"] == "filtered" for r in rows)
    with get_client(sync_client=True) as client:  # each stage's task run also published its own table
        keys = {f"samples-{stage}-stats" for stage in STAGES}
        per_stage = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys))))
        names = {run.name for run in client.read_task_runs() if run.name.startswith("samples/")}
    assert {artifact.key for artifact in per_stage} == keys
    assert names == {f"samples/{stage}" for stage in STAGES}

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fineforge-data-build"], output_format="list")
    assert len(runs) == 1
    assert runs[0].info.artifact_uri.startswith((workdir / "mlartifacts").as_uri())  # not ./mlruns of the cwd
    assert mlflow.artifacts.list_artifacts(run_id=runs[0].info.run_id, artifact_path="samples/filtered")
    metrics = runs[0].data.metrics
    for dump in dumps(workdir):
        assert metrics[f"{dump}/filtered/documents_out"] == read_stats(workdir, dump, "filtered")["documents_out"]
    assert runs[0].data.params["filters.language.languages"] == "['en']"


def test_second_build_skips_complete_stages(built, shared_data):
    workdir, _ = built
    listing = workdir.parent / "warcs.txt"
    output = fineforge("data", "build", "--input", str(listing), "--workdir", str(workdir), "--dump", "samples",
                       "--spark-master", "local[2]", "--no-mlflow", "--sample-fraction", str(SAMPLE_FRACTION))
    assert output.count("(skipped: already complete)") == len(STAGES) * len(dumps(workdir)), output


def test_invalid_config_fails_before_any_work(tmp_path, shared_data):
    workdir = tmp_path / "work"
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"input": str(shared_data / "warc"), "filters": {"language": {"threshold": 7}}}))
    result = runner.invoke(app, ["data", "build", "--config", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 2
    assert "filters.language.threshold" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not workdir.exists()


@pytest.mark.parametrize("settings", [{}, {"filters": {"language": {"languages": ["en", "xx"]}}},
                                      {"sample_documents": {"fraction": 0.1, "input": "tokens"}}])
def test_a_prefect_run_fails_at_once_with_the_clis_message(tmp_path, shared_data, settings):
    """The checks live in the config: a run from the Prefect UI or the API fails as the command does."""
    from prefect.exceptions import ParameterTypeError

    from fineforge.flows.data_build import data_build

    spec = str(tmp_path / "nowhere") if not settings else str(shared_data / "warc")
    values = {"input": spec, "workdir": str(tmp_path / "work"), **settings}
    (tmp_path / "build.json").write_text(json.dumps(values))
    result = runner.invoke(app, ["data", "build", "--config", str(tmp_path / "build.json")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    message = result.output.strip().removeprefix("error: invalid config: ")
    with pytest.raises(ParameterTypeError) as error:
        data_build(config=values)
    (line,) = str(error.value).splitlines()[1:]
    assert line.startswith(" - config") and line.endswith(message), (line, message)
    assert not (tmp_path / "work").exists()


def test_missing_input_fails_before_any_work(tmp_path):
    workdir = tmp_path / "work"
    result = runner.invoke(app, ["data", "build", "--input", str(tmp_path / "nowhere"), "--workdir", str(workdir)])
    assert result.exit_code == 2
    assert "nowhere" in result.output
    assert not workdir.exists()
