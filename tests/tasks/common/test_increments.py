"""Stages that grow by increments (`tasks/common/increments.py`) on the real Spark session and real text: the dedup
stage appended to equals a fresh run, its new documents deduplicated against the earlier ones; what makes a stage
rebuild whole instead (an interrupted append, a removed input), and what needs no work (the same input files)."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fineforge.tasks.common.documents import parquet_files, part_file_name
from fineforge.tasks.common.increments import ALREADY_PROCESSED, PROCESSED, REGISTRY_FILE, execute_incremental
from fineforge.tasks.common.stage import StageOutput, execute_stage
from fineforge.tasks.dedup.config import DedupConfig
from fineforge.tasks.dedup.job import DedupStage
from fineforge.tasks.sample.config import SampleConfig
from fineforge.tasks.sample.job import SampleStage
from testkit.dedup_corpus import real_texts, write_documents

DUMP = "CC-MAIN-2024-22"
EXACT = DedupConfig(minhash=False, exact=True)


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    return real_texts(shared_data)[:250]


def add_part(folder: Path, number: int, texts: list[str]) -> None:
    """One part file of documents with ids unique to it, as the filter stage writes one per WARC file."""
    scratch = folder.parent / f"scratch-{number}"
    ids = [f"<urn:uuid:part{number}-{i:06d}>" for i in range(len(texts))]
    write_documents(texts, scratch, rows_per_file=len(texts), id=ids)
    folder.mkdir(parents=True, exist_ok=True)
    (scratch / part_file_name(0)).rename(folder / part_file_name(number))
    shutil.rmtree(scratch)


def upstream(folder: Path, version: str) -> StageOutput:
    """The folder as a complete upstream output; its fingerprint changes with its parts, as a filter stage's does."""
    return StageOutput(folder, version, {})


def ids(folder: Path) -> list[str]:
    return sorted(pq.read_table(parquet_files([folder]), columns=["id"]).column("id").to_pylist())


def parts(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in parquet_files([folder])}


def test_an_appended_dedup_equals_a_fresh_one_and_leaves_earlier_parts(spark, texts, tmp_path):
    filtered = tmp_path / "work" / DUMP / "filtered"
    add_part(filtered, 0, texts[:100])
    add_part(filtered, 1, texts[100:200])
    first = execute_incremental(DedupStage(EXACT, [upstream(filtered, "v1")], DUMP), tmp_path / "work", spark)
    before = parts(first.path)
    add_part(filtered, 2, texts[150:250] + texts[:10])  # 60 documents seen before, 50 new
    appended = execute_incremental(DedupStage(EXACT, [upstream(filtered, "v2")], DUMP), tmp_path / "work", spark)
    fresh = execute_stage(DedupStage(EXACT, [upstream(filtered, "v2")], DUMP), tmp_path / "fresh", spark)

    statistics = appended.statistics
    assert (statistics[ALREADY_PROCESSED], statistics[PROCESSED]) == (2, 1)
    assert statistics["dropped"]["exact_duplicate"] == fresh.statistics["dropped"]["exact_duplicate"] == 60
    assert statistics["documents_in"] == 310 and statistics["documents_out"] == fresh.statistics["documents_out"]
    assert ids(appended.path) == ids(fresh.path)
    assert appended.fingerprint == fresh.fingerprint
    assert {name: parts(appended.path)[name] for name in before} == before
    registry = json.loads((appended.path / REGISTRY_FILE).read_text())
    new_parts = sorted(set(parts(appended.path)) - set(before))
    assert [entry["parts"] for entry in registry["inputs"] if entry["increment"] == 1] == [new_parts]


def test_an_interrupted_append_or_a_removed_input_rebuilds_whole(spark, texts, tmp_path):
    scrubbed = tmp_path / "work" / DUMP / "scrubbed"
    add_part(scrubbed, 0, texts[:50])
    add_part(scrubbed, 1, texts[50:100])
    config = SampleConfig(fraction=0.5, input="scrubbed")
    first = execute_incremental(SampleStage(config, [upstream(scrubbed, "v1")], DUMP), tmp_path / "work", spark)
    registry = json.loads((first.path / REGISTRY_FILE).read_text())
    assert [entry["parts"] for entry in registry["inputs"]] == [["part-00000.parquet"], ["part-00001.parquet"]]

    shutil.copyfile(first.path / "part-00001.parquet", first.path / "part-00002.parquet")  # an append killed midway
    add_part(scrubbed, 2, texts[100:150])
    rebuilt = execute_incremental(SampleStage(config, [upstream(scrubbed, "v2")], DUMP), tmp_path / "work", spark)
    assert ALREADY_PROCESSED not in rebuilt.statistics and rebuilt.statistics["input_files"] == 3

    (scrubbed / "part-00000.parquet").unlink()  # an input gone: its documents cannot be taken out of the parts
    add_part(scrubbed, 3, texts[150:200])
    again = execute_incremental(SampleStage(config, [upstream(scrubbed, "v3")], DUMP), tmp_path / "work", spark)
    assert ALREADY_PROCESSED not in again.statistics and again.statistics["input_files"] == 3
    fresh = execute_stage(SampleStage(config, [upstream(scrubbed, "v3")], DUMP), tmp_path / "fresh", spark)
    assert ids(again.path) == ids(fresh.path)

    before = parts(again.path)  # the same input files under a new upstream fingerprint: nothing to run
    same = execute_incremental(SampleStage(config, [upstream(scrubbed, "v4")], DUMP), tmp_path / "work", spark)
    assert same.skipped and same.statistics[PROCESSED] == 0 and parts(same.path) == before
    assert same.fingerprint != again.fingerprint
    assert same.statistics["documents_out"] == fresh.statistics["documents_out"]
