"""The filter and scrub Spark jobs on the real sample WARCs, with the real local Spark session."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from fineforge.tasks.common.documents import DOCUMENT_SCHEMA
from fineforge.tasks.filter.config import FilterConfig
from fineforge.tasks.filter.job import filter_warcs_to_parquet, part_file_name
from fineforge.tasks.scrub.job import scrub_parquet

SAMPLES = ["wget-2024-sample-0000.warc.gz", "wget-2024-sample-0001.warc.gz"]
BROKEN = ["warcio-example-trunc.warc", "warcio-example-bad.warc.gz.bad"]
CONFIG = FilterConfig(extraction={"timeout": 30})
DUMP = "CC-MAIN-TEST"


def _dropped(step: dict) -> int:
    return sum(value for key, value in step.items() if key.startswith("dropped_"))


@pytest.fixture(scope="module")
def filtered(spark, shared_data, tmp_path_factory):
    uris = [str(shared_data / "warc" / name) for name in SAMPLES + BROKEN]
    output = tmp_path_factory.mktemp("stage") / "filtered"
    stats = filter_warcs_to_parquet(spark, uris, CONFIG, output, DUMP)
    return uris, output, stats


def test_one_part_per_warc_with_the_fixed_schema(filtered):
    uris, output, stats = filtered
    assert sorted(p.name for p in output.iterdir()) == [part_file_name(i) for i in range(len(uris))]
    for part in output.iterdir():
        assert pq.read_schema(part).remove_metadata() == DOCUMENT_SCHEMA.remove_metadata()
    table = pq.read_table(output)
    assert table.num_rows == stats["documents_out"] > 0
    assert stats["warc_files"] == len(uris)
    assert stats["bytes_out"] == sum(p.stat().st_size for p in output.iterdir())


def test_real_documents_are_kept_with_their_metadata(filtered, shared_data):
    _, output, _ = filtered
    rows = {row["url"]: row for row in pq.read_table(output).to_pylist()}
    page = rows["https://soldaini.net/"]
    assert "Luca Soldaini" in page["text"]
    assert page["dump"] == DUMP and page["language"] == "en" and page["language_score"] > 0.65
    assert page["warc_file"].endswith("wget-2024-sample-0000.warc.gz") and page["warc_offset"] >= 0
    assert page["crawl_date"].startswith("2024-04-25") and page["text_length"] == len(page["text"])
    with open(shared_data / "warc" / "wget-2024-sample-0000.warc.gz", "rb") as warc:
        warc.seek(page["warc_offset"])
        assert warc.read(2) == b"\x1f\x8b"  # the offset is where the record's gzip member starts
    assert len({row["id"] for row in rows.values()}) == len(rows)


def test_statistics_are_consistent(filtered):
    _, _, stats = filtered
    steps = stats["steps"]
    assert [s["name"] for s in steps] == ["url", "extraction", "language", "gopher_rep", "gopher_qual", "c4",
                                          "fineweb_qual"]  # fmt: skip
    assert steps[0]["documents_in"] == stats["documents_in"] == stats["reader"]["html_documents"]
    assert steps[-1]["documents_out"] == stats["documents_out"]
    for before, after in zip(steps, steps[1:], strict=False):
        assert before["documents_out"] == after["documents_in"]
    for step in steps:
        assert step["documents_in"] - _dropped(step) == step["documents_out"], step
    filter_drops = {k: v for k, v in stats["dropped"].items() if "/" in k}
    assert sum(filter_drops.values()) == stats["documents_in"] - stats["documents_out"]
    assert all(re.fullmatch(r"[a-z_0-9]+/[a-z_0-9]+", key) for key in filter_drops)
    assert stats["dropped"]["gopher_qual/gopher_below_alpha_threshold"] > 0


def test_damaged_input_is_counted_not_fatal(filtered):
    _, _, stats = filtered
    damage = stats["dropped"].get("corrupt_record", 0) + stats["dropped"].get("unreadable_file", 0)
    assert damage > 0


def test_scrub_keeps_documents_and_schema(spark, filtered, tmp_path):
    _, filtered_dir, filter_stats = filtered
    stats = scrub_parquet(spark, filtered_dir, CONFIG, tmp_path / "scrubbed")
    before = {row["id"]: row for row in pq.read_table(filtered_dir).to_pylist()}
    after = {row["id"]: row for row in pq.read_table(tmp_path / "scrubbed").to_pylist()}
    assert before.keys() == after.keys()
    assert stats["documents_in"] == stats["documents_out"] == filter_stats["documents_out"]
    assert stats["steps"] == [{"name": "pii", "documents_in": len(before), "documents_out": len(before)}]
    changed = [i for i in before if before[i]["text"] != after[i]["text"]]
    assert len(changed) == stats["documents_changed"]
    for i in changed:
        assert "@example." in after[i]["text"] or re.search(r"\d+\.\d+\.\d+\.\d+", after[i]["text"])
        assert after[i]["text_length"] == len(after[i]["text"])
    for row in after.values():
        assert not re.search(r"[\w.]+@(?!example\.)[\w-]+\.[a-z]{2,}\b", row["text"])


def test_empty_input_list_writes_nothing_but_the_folder(spark, tmp_path):
    stats = filter_warcs_to_parquet(spark, [], CONFIG, tmp_path / "out", DUMP)
    assert stats["documents_in"] == stats["documents_out"] == stats["warc_files"] == 0
    assert (tmp_path / "out").is_dir()
