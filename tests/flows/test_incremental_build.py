"""Scheduled, incremental rebuilds through real `data_build` flow runs on real Spark and real WARCs: the dump spec
`latest` is resolved when each run starts, and a new WARC file in a dump already built is processed alone, its
documents deduplicated against the earlier output and appended as new parts, the earlier parts untouched."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fineforge.flows.data_build import data_build
from fineforge.flows.data_build_config import DataBuildConfig
from fineforge.tasks.common.increments import REGISTRY_FILE
from testkit.dump_bucket import write_dump

OLD_DUMP, DUMP = "CC-MAIN-2024-18", "CC-MAIN-2024-22"
FIRST = ["cc-main-2014-35-sample.warc", "wget-2024-sample-0000.warc.gz"]
NEW = "wget-2024-sample-0001.warc.gz"  # listed last, as CommonCrawl appends to a dump's list
STAGES = ("filtered", "deduplicated", "scrubbed")
# Exact dedup keeps the test short; MinHash appended to is the same code path (tests/tasks/common/test_increments.py
# deduplicates an increment against earlier documents).
DEDUP = {"minhash": False, "exact": True}


def build(source: Path, workdir: Path, **settings) -> dict:
    config = DataBuildConfig(input="latest", source=str(source), workdir=workdir, spark={"master": "local[2]"},
                             mlflow=False, dedup=DEDUP, **settings)
    return data_build(config)


def parts(folder: Path) -> dict[str, tuple[int, int]]:
    """Each part file of a stage folder with its size and mtime: what 'untouched' means."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.parquet"))}


def document_ids(folder: Path) -> list[str]:
    return sorted(pq.read_table(sorted(folder.glob("*.parquet")), columns=["id"]).column("id").to_pylist())


def stats(workdir: Path, stage: str) -> dict:
    return json.loads((workdir / DUMP / stage / "stats.json").read_text())


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory, shared_data, spark):
    """Build the latest dump with two WARC files, then list a third in it and build again; and a fresh build of all
    three for comparison."""
    tmp = tmp_path_factory.mktemp("incremental")
    warcs = shared_data / "warc"
    write_dump(tmp / "bucket", OLD_DUMP, [warcs / "cc-main-2024-22-one-page.warc.gz"])
    write_dump(tmp / "bucket", DUMP, [warcs / name for name in FIRST])
    first = build(tmp / "bucket", tmp / "work")
    before = {stage: parts(tmp / "work" / DUMP / stage) for stage in STAGES}
    write_dump(tmp / "bucket", DUMP, [warcs / name for name in [*FIRST, NEW]])
    second = build(tmp / "bucket", tmp / "work")
    fresh = build(tmp / "bucket", tmp / "fresh")
    return tmp, first, before, second, fresh


def test_latest_is_resolved_when_the_build_runs(rebuilt):
    tmp, first, *_ = rebuilt
    assert set(first["outputs"]) == {DUMP} and not (tmp / "work" / OLD_DUMP).exists()


def test_only_the_new_warc_is_read_and_its_parts_are_appended(rebuilt):
    tmp, _, before, second, _ = rebuilt
    filtered = stats(tmp / "work", "filtered")
    assert (filtered["inputs_already_processed"], filtered["inputs_processed"], filtered["increments"]) == (2, 1, 2)
    registry = json.loads((tmp / "work" / DUMP / "filtered" / REGISTRY_FILE).read_text())
    increments = {Path(entry["input"]).name: (entry["increment"], entry["parts"]) for entry in registry["inputs"]}
    assert increments == {FIRST[0]: (0, ["part-00000.parquet"]), FIRST[1]: (0, ["part-00001.parquet"]),
                          NEW: (1, ["part-00002.parquet"])}
    assert registry["fingerprint"] == filtered["fingerprint"]
    for stage in STAGES:
        assert before[stage], f"{stage}: the first build wrote no part"  # else 'untouched' would prove nothing
        now = parts(tmp / "work" / DUMP / stage)
        assert {name: now[name] for name in before[stage]} == before[stage], f"{stage}: earlier parts changed"
    for upstream, stage in zip(STAGES, STAGES[1:], strict=False):  # a later stage's inputs are the upstream parts
        assert stats(tmp / "work", stage)["inputs_already_processed"] == len(before[upstream])
    assert not any(output.skipped for output in second["stages"])


def test_the_appended_output_equals_a_fresh_build(rebuilt):
    """The same documents, counts and fingerprints as one build of all three WARC files."""
    tmp, *_ = rebuilt
    for stage in STAGES:
        appended, fresh = stats(tmp / "work", stage), stats(tmp / "fresh", stage)
        assert document_ids(tmp / "work" / DUMP / stage) == document_ids(tmp / "fresh" / DUMP / stage), stage
        for key in ("documents_in", "documents_out", "dropped", "fingerprint"):
            assert appended[key] == fresh[key], (stage, key)
    deduplicated = stats(tmp / "work", "deduplicated")
    assert deduplicated["documents_in"] == stats(tmp / "work", "filtered")["documents_out"]


def test_a_rebuild_without_new_warcs_skips_every_stage(rebuilt):
    tmp, *_ = rebuilt
    again = build(tmp / "bucket", tmp / "work")
    assert all(output.skipped for output in again["stages"])


def test_a_changed_config_rebuilds_the_dump_whole(rebuilt):
    tmp, *_ = rebuilt
    changed = build(tmp / "bucket", tmp / "work", scrub={"remove_ips": False})
    scrubbed = {output.name: output for output in changed["stages"]}["scrubbed"]
    assert not scrubbed.skipped and "inputs_already_processed" not in scrubbed.statistics
    assert {output.name for output in changed["stages"] if output.skipped} == {"filtered", "deduplicated"}
