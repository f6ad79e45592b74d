"""Conformance with the reference: datatrove's own LocalPipelineExecutor, same steps and settings, same WARCs.

In the FineWeb-exact configuration (`extraction.method: fineweb`, datatrove's own Trafilatura step on the
reference side, the same installed trafilatura on both), fineforge (Spark, one task per WARC, its reader
and its faster word tokenizer) must keep exactly the documents datatrove keeps, with identical text.
datatrove runs one task per file, as fineforge does, so trafilatura's cross-document deduplication sees the
same documents in the same order.

Two deliberate differences of fineforge's default HTML decision (`html_records: content-type`), both checked
here: fineforge reads only HTTP 200 responses (datatrove reads every status), and it trusts an HTML
Content-Type where datatrove, for records without a WARC-Identified-Payload-Type, asks libmagic - which calls
some real pages JavaScript or XML and loses them. The FineWeb-exact configuration also decides as datatrove
(`html_records: datatrove`) and reads exactly the documents datatrove's WarcReader reads.
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
# FineWeb's extraction on both sides; a generous timeout because datatrove's is wall-clock time, so that a
# loaded machine cannot make the reference drop a document as timed out.
CONFIG = FilterConfig(extraction={"method": "fineweb", "timeout": 60}, language={"languages": None})


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


def _datatrove_read(shared_data) -> set[str]:
    reader = WarcReader(str(shared_data / "warc"))
    return {document.id for name in SAMPLES for document in reader.read_file(name)}


def test_fineweb_exact_reads_what_datatrove_reads(shared_data):
    names = [*SAMPLES, "archive-it-2008-example.warc.gz"]  # + a Heritrix crawl without identified types
    counts = Counter()
    ours = {d.id: d.text for name in names
            for d in iter_html_documents(str(shared_data / "warc" / name), counts, html_records="datatrove")}
    reader = WarcReader(str(shared_data / "warc"))
    assert ours == {document.id: document.text for name in names for document in reader.read_file(name)}
    assert counts["payload_html_by_identified_type"] > 0 and counts["payload_html_by_sniffed_libmagic"] > 0


def test_fineforge_keeps_what_datatrove_keeps(spark, shared_data, tmp_path):
    uris = [str(shared_data / "warc" / name) for name in SAMPLES]
    stats = filter_warcs_to_parquet(spark, uris, CONFIG, tmp_path / "fineforge", "CC-MAIN-TEST")
    ours = {row["id"]: row for row in pq.read_table(tmp_path / "fineforge").to_pylist()}
    reference = _datatrove_kept(shared_data, tmp_path)

    # fineforge reads only HTTP 200 HTML responses; datatrove's WarcReader also reads other statuses.
    read = {d.id: d for uri in uris for d in iter_html_documents(uri, Counter())}
    extra = set(reference) - set(read)
    assert all(_http_status(shared_data, record_id) != "200" for record_id in extra)
    # fineforge also reads pages served as HTML that datatrove's libmagic sniffing rejected (no identified type).
    gained = set(read) - _datatrove_read(shared_data)
    assert len(gained) == 3  # wget-0001: 1 page after blank lines; 2014-35: 2 XHTML pages after <?xml ...?>
    assert all(read[i].metadata["content_type"] in ("text/html", "application/xhtml+xml") for i in gained)

    expected = {i: d for i, d in reference.items() if i in read}
    assert len(ours) == stats["documents_out"] and len(expected) >= 5
    assert ours.keys() - gained == expected.keys()
    for record_id, document in expected.items():
        row = ours[record_id]
        assert row["text"] == document["text"], row["url"]
        assert row["url"] == document["metadata"]["url"]
        assert row["language"] == document["metadata"]["language"]
        assert row["language_score"] == document["metadata"]["language_score"]
