"""The README's promise, as a user meets it: the real `fineforge` command in its own process gives one error line
and a nonzero exit, and writes nothing, for an unreachable Spark master, remote source or Prefect server, a tokens
input that is not documents in Parquet, and a build whose every input is unreadable."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from testkit.services import fineforge, free_port

SAMPLE_WARC = "warc/cc-main-2014-35-sample.warc"


def the_one_error_line(result) -> str:
    """The command's error line; stderr holds nothing else."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def nothing_written(workdir: Path) -> bool:
    return not workdir.exists()


def test_unreachable_spark_master(shared_data, tmp_path):
    master = f"spark://127.0.0.1:{free_port()}"
    workdir = tmp_path / "work"
    build = fineforge("data", "build", "--input", str(shared_data / SAMPLE_WARC), "--workdir", str(workdir),
                      "--spark-master", master)
    assert build.returncode == 2
    assert f"spark.master: Spark master {master} does not answer" in the_one_error_line(build)
    assert nothing_written(workdir)


@pytest.mark.parametrize("source", ["https", "s3"])
def test_unreachable_commoncrawl_source_is_not_an_unknown_dump(source, tmp_path):
    port = free_port()  # nothing listens there: a host that cannot be reached
    url, env = (f"https://127.0.0.1:{port}", {}) if source == "https" else (
        "s3://commoncrawl", {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})  # fmt: skip
    workdir = tmp_path / "work"
    build = fineforge("data", "build", "--input", "CC-MAIN-2024-22", "--limit", "1", "--source", url,
                      "--workdir", str(workdir), env=env)
    assert build.returncode == 2
    line = the_one_error_line(build)
    assert f"cannot reach {url} to read the WARC list of dump CC-MAIN-2024-22" in line and "unknown dump" not in line
    assert nothing_written(workdir)


def test_unreachable_prefect_server(shared_data, tmp_path):
    workdir = tmp_path / "work"
    api = f"http://127.0.0.1:{free_port()}/api"
    build = fineforge("data", "build", "--input", str(shared_data / SAMPLE_WARC), "--workdir", str(workdir),
                      env={"PREFECT_API_URL": api})
    assert build.returncode == 2
    assert f"PREFECT_API_URL={api} does not answer" in the_one_error_line(build)
    assert nothing_written(workdir)


def test_tokens_build_needs_documents_in_parquet(tmp_path):
    empty, junk, no_text = tmp_path / "empty", tmp_path / "junk", tmp_path / "no-text"
    for folder in (empty, junk, no_text):
        folder.mkdir()
    (junk / "part-00000.parquet").write_text("not parquet")
    pq.write_table(pa.table({"id": ["a"], "body": ["words"]}), no_text / "part-00000.parquet")
    cases = [(empty, f"input: no Parquet files (*.parquet) in {empty}"),
             (junk, f"input: {junk / 'part-00000.parquet'}: not a readable Parquet file"),
             (no_text, f"input: {no_text / 'part-00000.parquet'}: no column 'text' (columns: id, body)")]
    for folder, message in cases:
        workdir = tmp_path / f"work-{folder.name}"
        result = fineforge("tokens", "build", "--input", str(folder), "--workdir", str(workdir), "--tokenizer", "bytes")
        assert result.returncode == 2 and message in the_one_error_line(result), (folder, result.stderr)
        assert nothing_written(workdir)


def test_a_build_whose_every_input_is_unreadable_fails_with_the_reason(shared_data, tmp_path):
    """It used to complete, with 0 documents in every stage and exit 0."""
    inputs = tmp_path / "warcs"
    inputs.mkdir()
    (inputs / "a.warc").write_text("not a WARC file\n")
    (inputs / "b.warc.gz").write_bytes((shared_data / "warc" / "broken" / "warcio-example-bad.warc.gz.bad")
                                       .read_bytes()[:200])  # a clipped gzip member
    workdir = tmp_path / "work"
    build = fineforge("data", "build", "--input", str(inputs), "--workdir", str(workdir), "--spark-master",
                      "local[2]", "--no-mlflow")
    assert build.returncode == 1, build.stderr
    errors = [line for line in build.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: local: no document read from 2 input files (corrupt_record=1, unreadable_file=1); "
                      "the log names each file's error"], build.stderr
    assert "Traceback" not in build.stderr  # Prefect logs the failure without burying the line
    assert sorted(p.name for p in workdir.iterdir()) == [".fineforge.lock"]  # no stage folder, no temporary one
