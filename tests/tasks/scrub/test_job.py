"""The scrub stage's Spark job on the filter stage's output of real WARCs (the `filtered` fixture)."""

from __future__ import annotations

import re

import pyarrow.parquet as pq

from fineforge.tasks.common.documents import DOCUMENT_SCHEMA
from fineforge.tasks.scrub.config import ScrubConfig
from fineforge.tasks.scrub.job import scrub_parquet


def test_scrub_keeps_documents_and_schema(spark, filtered, tmp_path):
    stats = scrub_parquet(spark, filtered.folder, ScrubConfig(), tmp_path / "scrubbed")
    before = {row["id"]: row for row in pq.read_table(filtered.folder).to_pylist()}
    after = {row["id"]: row for row in pq.read_table(tmp_path / "scrubbed").to_pylist()}
    assert before.keys() == after.keys()
    assert stats["documents_in"] == stats["documents_out"] == filtered.stats["documents_out"]
    assert stats["input_files"] == len(filtered.uris) and stats["dropped"] == {}
    assert stats["steps"] == [{"name": "pii", "documents_in": len(before), "documents_out": len(before)}]
    changed = [i for i in before if before[i]["text"] != after[i]["text"]]
    assert len(changed) == stats["documents_changed"] > 0
    for i in changed:
        assert "@example." in after[i]["text"] or re.search(r"\d+\.\d+\.\d+\.\d+", after[i]["text"])
        assert after[i]["text_length"] == len(after[i]["text"])
    for row in after.values():
        assert not re.search(r"[\w.]+@(?!example\.)[\w-]+\.[a-z]{2,}\b", row["text"])
    for part in (tmp_path / "scrubbed").iterdir():
        assert pq.read_schema(part).remove_metadata() == DOCUMENT_SCHEMA.remove_metadata()


def test_switched_off_scrub_copies_the_documents(spark, filtered, tmp_path):
    stats = scrub_parquet(spark, filtered.folder, ScrubConfig(enabled=False), tmp_path / "copied")
    assert stats["steps"] == [] and stats["documents_changed"] == 0
    assert pq.read_table(tmp_path / "copied").equals(pq.read_table(filtered.folder))
