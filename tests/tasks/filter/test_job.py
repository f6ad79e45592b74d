"""The filter stage's Spark job on the real sample WARCs (the `filtered` fixture), with the real local Spark session."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from fineforge.tasks.common.documents import DOCUMENT_SCHEMA, part_file_name
from fineforge.tasks.common.stage import execute_stage
from fineforge.tasks.filter.config import FilterConfig
from fineforge.tasks.filter.job import FilterStage, NoDocumentsKept, filter_warcs_to_parquet


def _dropped(step: dict) -> int:
    return sum(value for key, value in step.items() if key.startswith("dropped_"))


def test_one_part_per_warc_with_the_fixed_schema(filtered):
    output, stats = filtered.folder, filtered.stats
    assert sorted(p.name for p in output.iterdir()) == [part_file_name(i) for i in range(len(filtered.uris))]
    for part in output.iterdir():
        assert pq.read_schema(part).remove_metadata() == DOCUMENT_SCHEMA.remove_metadata()
    table = pq.read_table(output)
    assert table.num_rows == stats["documents_out"] > 0
    assert stats["input_files"] == len(filtered.uris)
    assert stats["bytes_out"] == sum(p.stat().st_size for p in output.iterdir())


def test_real_documents_are_kept_with_their_metadata(filtered, shared_data):
    rows = {row["url"]: row for row in pq.read_table(filtered.folder).to_pylist()}
    page = rows["https://soldaini.net/"]
    assert "Luca Soldaini" in page["text"]
    assert page["dump"] == filtered.dump and page["language"] == "en" and page["language_score"] > 0.65
    assert page["warc_file"].endswith("wget-2024-sample-0000.warc.gz") and page["warc_offset"] >= 0
    assert page["crawl_date"].startswith("2024-04-25") and page["text_length"] == len(page["text"])
    with open(shared_data / "warc" / "wget-2024-sample-0000.warc.gz", "rb") as warc:
        warc.seek(page["warc_offset"])
        assert warc.read(2) == b"\x1f\x8b"  # the offset is where the record's gzip member starts
    assert len({row["id"] for row in rows.values()}) == len(rows)


def test_statistics_are_consistent(filtered):
    stats = filtered.stats
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
    assert filtered.stats["dropped"].get("corrupt_record", 0) > 0  # the truncated and the damaged WARC


def test_empty_input_list_writes_nothing_but_the_folder(spark, filtered, tmp_path):
    stats = filter_warcs_to_parquet(spark, [], filtered.config, tmp_path / "out", filtered.dump)
    assert stats["documents_in"] == stats["documents_out"] == stats["input_files"] == 0 and stats["dropped"] == {}
    assert (tmp_path / "out").is_dir()


def test_a_filter_stage_that_keeps_no_document_fails_and_writes_nothing(spark, shared_data, tmp_path):
    """English pages and a German-only build: a config that keeps nothing is an error with its reason, not an
    empty corpus (the build used to complete with 0 documents and exit 0)."""
    config = FilterConfig(language={"languages": ["de"]}, extraction={"timeout": 30})
    stage = FilterStage(config, [str(shared_data / "warc" / "cc-main-2014-35-sample.warc")], "CC-MAIN-2014-35")
    workdir = tmp_path / "work"
    with pytest.raises(NoDocumentsKept) as refused:
        execute_stage(stage, workdir, spark)
    message = str(refused.value)
    assert message.startswith("CC-MAIN-2014-35: no document kept of ") and "from 1 files" in message
    assert "language/" in message and message.endswith("check the filter settings, e.g. filters.language")
    assert list(workdir.iterdir()) == []  # neither the stage folder, nor its temporary one, nor the dump folder
