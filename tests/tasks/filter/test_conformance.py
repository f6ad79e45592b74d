"""Conformance with the reference: datatrove's own LocalPipelineExecutor, same steps and settings, same WARCs.

fineforge (Spark, one task per WARC, its reader and its faster word tokenizer) must keep exactly the
documents datatrove keeps, with identical text. datatrove runs one task per file, as fineforge does, so
trafilatura's cross-document deduplication sees the same documents in the same order.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pyarrow.parquet as pq
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter
from warcio.archiveiterator import ArchiveIterator

from fineforge.tasks.filter.config import FilterConfig, build_filter_steps
from fineforge.tasks.filter.job import filter_warcs_to_parquet
from fineforge.tasks.filter.warc_records import iter_html_documents

SAMPLES = [
    "wget-2024-sample-0001.warc.gz",
    "cc-main-2014-35-sample.warc",
    "cc-main-2020-34-slice.warc.gz",
    "cc-main-2024-22-one-page.warc.gz",
]
# Same settings on both sides; a generous extraction timeout so that a loaded machine cannot make the
# two runs differ by a timed-out (dropped) document.
CONFIG = FilterConfig(extraction={"timeout": 60}, language={"languages": None})


def _datatrove_kept(shared_data, tmp_path) -> dict[str, dict]:
    paths_file = tmp_path / "paths.txt"
    paths_file.write_text("\n".join(SAMPLES) + "\n")
    output = tmp_path / "datatrove"
    LocalPipelineExecutor(
        pipeline=[
            WarcReader(str(shared_data / "warc"), paths_file=str(paths_file)),
            *build_filter_steps(CONFIG, reference=True),
            JsonlWriter(str(output)),
        ],
        tasks=len(SAMPLES),
        workers=2,
        logging_dir=str(tmp_path / "logs"),
    ).run()
    kept = {}
    for part in sorted(output.glob("*.jsonl.gz")):
        with gzip.open(part, "rt") as lines:
            for line in lines:
                document = json.loads(line)
                kept[document["id"]] = document
    return kept


def _http_status(shared_data, record_id: str) -> str:
    for name in SAMPLES:
        with open(shared_data / "warc" / name, "rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_headers.get_header("WARC-Record-ID") == record_id:
                    return record.http_headers.get_statuscode()
    raise AssertionError(f"{record_id} not in the samples")


def test_fineforge_keeps_what_datatrove_keeps(spark, shared_data, tmp_path):
    uris = [str(shared_data / "warc" / name) for name in SAMPLES]
    stats = filter_warcs_to_parquet(spark, uris, CONFIG, tmp_path / "fineforge", "CC-MAIN-TEST")
    ours = {row["id"]: row for row in pq.read_table(tmp_path / "fineforge").to_pylist()}
    reference = _datatrove_kept(shared_data, tmp_path)

    # fineforge reads only HTTP 200 HTML responses; datatrove's WarcReader also reads other statuses.
    read_ids = {d.id for uri in uris for d in iter_html_documents(uri, Counter())}
    extra = set(reference) - read_ids
    assert all(_http_status(shared_data, record_id) != "200" for record_id in extra)

    expected = {i: d for i, d in reference.items() if i in read_ids}
    assert len(ours) == stats["documents_out"] and len(expected) >= 5
    assert ours.keys() == expected.keys()
    for record_id, document in expected.items():
        row = ours[record_id]
        assert row["text"] == document["text"], row["url"]
        assert row["url"] == document["metadata"]["url"]
        assert row["language"] == document["metadata"]["language"]
        assert row["language_score"] == document["metadata"]["language_score"]
