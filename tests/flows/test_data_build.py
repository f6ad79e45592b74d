"""The data build end to end: the CLI runs the real Prefect flow on a real local Spark session over real WARCs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app

SAMPLES = [
    "cc-main-2020-34-slice.warc.gz",
    "cc-main-2014-35-sample.warc",
    "wget-2024-sample-0000.warc.gz",
    "wget-2024-sample-0001.warc.gz",
]
runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data, spark):
    """One build through the CLI (embedded defaults: Prefect temporary API, MLflow SQLite in the work dir)."""
    tmp = tmp_path_factory.mktemp("build")
    listing = tmp / "warcs.txt"
    listing.write_text("\n".join(str(shared_data / "warc" / name) for name in SAMPLES) + "\n")
    workdir = tmp / "work"
    result = runner.invoke(app, ["data", "build", "--input", str(listing), "--workdir", str(workdir),
                                 "--dump", "samples", "--spark-master", "local[2]"])
    assert result.exit_code == 0, result.output
    return workdir, result.output


def read_stats(workdir: Path, dump: str, stage: str) -> dict:
    return json.loads((workdir / dump / stage / "stats.json").read_text())


def dumps(workdir: Path) -> list[str]:
    return sorted(p.name for p in workdir.iterdir() if p.is_dir() and not p.name.startswith("."))


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
        assert scrubbed["documents_in"] == filtered["documents_out"] == scrubbed["documents_out"]
        table = pq.read_table(workdir / dump / "scrubbed")
        assert table.num_rows == scrubbed["documents_out"]
        total_out += table.num_rows
        for row in table.to_pylist():
            assert row["language"] == "en" and row["language_score"] >= 0.65
            assert row["text"].strip() and row["url"].startswith("http")
            assert Path(row["warc_file"]).name in SAMPLES and row["warc_offset"] >= 0
    assert total_out > 0


def test_pii_is_scrubbed(built):
    workdir, _ = built
    import re

    for dump in dumps(workdir):
        for text in pq.read_table(workdir / dump / "scrubbed", columns=["text"]).column("text").to_pylist():
            assert not re.search(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b", text.replace("email@example.com", ""))


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

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fineforge-data-build"], output_format="list")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    for dump in dumps(workdir):
        assert metrics[f"{dump}/filtered/documents_out"] == read_stats(workdir, dump, "filtered")["documents_out"]
    assert runs[0].data.params["filters.languages"] == "['en']"


def test_second_build_skips_complete_stages(built, shared_data):
    workdir, _ = built
    listing = workdir.parent / "warcs.txt"
    result = runner.invoke(app, ["data", "build", "--input", str(listing), "--workdir", str(workdir),
                                 "--dump", "samples", "--no-mlflow"])
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output


def test_invalid_config_fails_before_any_work(tmp_path, shared_data):
    workdir = tmp_path / "work"
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"input": str(shared_data / "warc"), "filters": {"language_threshold": 7}}))
    result = runner.invoke(app, ["data", "build", "--config", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 2
    assert "filters.language_threshold" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not workdir.exists()


def test_missing_input_fails_before_any_work(tmp_path):
    workdir = tmp_path / "work"
    result = runner.invoke(app, ["data", "build", "--input", str(tmp_path / "nowhere"), "--workdir", str(workdir)])
    assert result.exit_code == 2
    assert "nowhere" in result.output
    assert not workdir.exists()
