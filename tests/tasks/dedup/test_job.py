"""The dedup stage end to end on Parquet, and conformance with datatrove's own four-stage MinHash pipeline."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import JsonlWriter

from fineforge.tasks.common.documents import DOCUMENT_SCHEMA
from fineforge.tasks.dedup.config import DedupConfig
from fineforge.tasks.dedup.job import deduplicate_parquet
from testkit.dedup_corpus import CRAWL_DATE, edit_words, real_texts, write_documents

LONG_WORDS = 150  # documents this long get planted near-duplicates


def _ids(folder: Path) -> list[str]:
    return pq.read_table(folder, columns=["id"]).column("id").to_pylist()


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> tuple[Path, list[str]]:
    """Real documents, planted near-duplicates (pairs and chains), exact copies and bad documents."""
    rng = random.Random(7)
    texts = real_texts(shared_data)
    vocabulary = [word for text in texts[:200] for word in text.split()]
    long = [text for text in texts if len(text.split()) >= LONG_WORDS]
    sources = rng.sample(long, 24)
    docs = rng.sample(texts, 240) + sources
    for source in sources:
        copy = edit_words(source, 0.01, rng, vocabulary)
        docs.append(copy)
        if rng.random() < 0.5:  # chains: a copy of the copy
            docs.append(edit_words(copy, 0.01, rng, vocabulary))
    docs += [docs[3], docs[4]]  # exact copies
    docs += ["", "   ", "Too short.", "four words only here"]
    docs.append((shared_data / "corpora" / "tinyshakespeare.txt").read_text())  # > 1 MB
    rng.shuffle(docs)
    folder = write_documents(docs, tmp_path_factory.mktemp("dedup") / "filtered", rows_per_file=70)
    return folder, docs


def run_datatrove(input_folder: Path, work: Path, config) -> tuple[set[str], set[str]]:
    """datatrove's MinHash pipeline (signatures, buckets, clusters, filter): (kept ids, removed ids)."""
    logs = work / "logs"
    stages = [
        ([ParquetReader(str(input_folder)), MinhashDedupSignature(str(work / "sigs"), config=config)], 1),
        ([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)], config.num_buckets),
        ([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)], 1),
        (
            [
                ParquetReader(str(input_folder)),
                MinhashDedupFilter(str(work / "remove"), exclusion_writer=JsonlWriter(str(work / "removed"))),
                JsonlWriter(str(work / "kept")),
            ],
            1,
        ),
    ]
    for index, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(logs / str(index))).run()

    def read(folder: Path) -> set[str]:
        return {json.loads(line)["id"] for path in folder.glob("*.jsonl.gz") for line in gzip.open(path, "rt")}

    return read(work / "kept"), read(work / "removed")


def test_same_documents_removed_as_datatrove(spark, corpus, tmp_path):
    folder, docs = corpus
    config = DedupConfig()
    stats = deduplicate_parquet(spark, [folder], config, tmp_path / "deduplicated")

    kept_dt, removed_dt = run_datatrove(folder, tmp_path / "datatrove", config.minhash_config())
    input_ids = _ids(folder)
    kept = _ids(tmp_path / "deduplicated")
    empty = {doc_id for doc_id, text in zip(input_ids, docs, strict=True) if text == ""}
    assert len(kept) == len(set(kept))
    assert set(kept) == kept_dt
    assert set(input_ids) - set(kept) - empty == removed_dt
    assert len(removed_dt) >= 24  # the planted near-duplicates were found

    assert stats["documents_in"] == len(docs)
    assert stats["documents_out"] == len(kept)
    assert stats["dropped"] == {
        "empty_document": 1,
        "url_duplicate": 0,
        "exact_duplicate": 0,
        "minhash_duplicate": len(removed_dt),
    }
    histogram = stats["cluster_size_histogram"]
    assert sum(size * count for size, count in histogram.items()) - stats["clusters"] == len(removed_dt)
    assert max(histogram) >= 3  # chains became clusters of three
    assert stats["long_documents"] == 1
    assert stats["documents_without_shingles"] >= 4  # "", "   ", the two planted shorter than 5 words
    assert stats["connected_components_iterations"] >= 1
    assert [step["name"] for step in stats["steps"]] == ["empty", "minhash"]

    # the survivors are written through the one document writer: its schema, every input value kept
    parts = sorted((tmp_path / "deduplicated").glob("*.parquet"))
    assert all(pq.read_schema(part).remove_metadata() == DOCUMENT_SCHEMA.remove_metadata() for part in parts)
    before = {row["id"]: row for row in pq.read_table(folder).to_pylist()}
    for row in pq.read_table(parts).to_pylist():
        assert {column: row[column] for column in before[row["id"]]} == before[row["id"]]
        assert row["text_length"] == len(row["text"]) and row["content_type"] is None
    assert stats["bytes_out"] == sum(part.stat().st_size for part in parts)


@pytest.fixture(scope="module")
def two_dumps(shared_data, tmp_path_factory) -> tuple[list[Path], dict[str, str]]:
    """The same real documents in two dumps; in the first, a URL crawled twice with different text."""
    texts = random.Random(11).sample([t for t in real_texts(shared_data) if len(t.split()) >= 20], 30)
    root = tmp_path_factory.mktemp("dumps")
    first = write_documents(
        texts,
        root / "CC-MAIN-2024-10" / "filtered",
        rows_per_file=16,
        dump="CC-MAIN-2024-10",
        url=[f"https://www.example.org/a/{i}/" for i in range(29)] + ["http://example.org/a/0#top"],
        crawl_date=[CRAWL_DATE] * 29 + ["2024-06-01T00:00:00Z"],
    )
    second = write_documents(texts[:10], root / "CC-MAIN-2024-22" / "filtered", rows_per_file=16)
    ids = {"older": "<urn:uuid:CC-MAIN-2024-10-000000000>", "newer": "<urn:uuid:CC-MAIN-2024-10-000000029>"}
    return [first, second], ids


def test_url_exact_and_minhash_within_each_dump(spark, two_dumps, tmp_path):
    folders, ids = two_dumps
    stats = deduplicate_parquet(spark, folders, DedupConfig(url=True, exact=True), tmp_path / "out")
    kept = set(_ids(tmp_path / "out"))
    # the URL seen twice in the first dump keeps its most recent crawl; nothing else is a duplicate
    assert ids["newer"] in kept and ids["older"] not in kept
    assert stats["dropped"]["url_duplicate"] == 1
    assert stats["dropped"]["exact_duplicate"] == stats["dropped"]["minhash_duplicate"] == 0
    assert stats["documents_in"] == 40 and stats["documents_out"] == len(kept) == 39
    assert [step["name"] for step in stats["steps"]] == ["empty", "url", "exact", "minhash"]
    steps = stats["steps"]
    assert all(a["documents_out"] == b["documents_in"] for a, b in zip(steps, steps[1:], strict=False))


def test_scope_all_removes_copies_across_dumps(spark, two_dumps, tmp_path):
    folders, _ = two_dumps
    stats = deduplicate_parquet(spark, folders, DedupConfig(exact=True, scope="all"), tmp_path / "out")
    kept = _ids(tmp_path / "out")
    # the ten texts of the second dump are copies of the first dump's first ten
    assert stats["dropped"]["exact_duplicate"] == 10
    assert not [doc_id for doc_id in kept if "CC-MAIN-2024-22" in doc_id]
    assert stats["documents_out"] == len(kept) == 30


def test_missing_input_is_a_clear_error(spark, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        deduplicate_parquet(spark, [tmp_path / "nowhere"], DedupConfig(), tmp_path / "out")


def test_input_without_text_column_is_a_clear_error(spark, tmp_path):
    spark.createDataFrame([("a",)], "id string").write.parquet(str(tmp_path / "in"))
    with pytest.raises(ValueError, match="'text'"):
        deduplicate_parquet(spark, [tmp_path / "in"], DedupConfig(), tmp_path / "out")
