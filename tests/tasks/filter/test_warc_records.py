"""Streaming HTML records from the real sample WARCs, against datatrove's WarcReader and warcio's own view.

Damage tests work on copies of real WARCs, truncated, overwritten or cut at seeded random offsets.
"""

from __future__ import annotations

import gzip
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from datatrove.pipeline.readers import WarcReader
from warcio.archiveiterator import ArchiveIterator

from fineforge.tasks.filter.warc_records import iter_html_documents

SAMPLES = [
    "archive-it-2008-example.warc.gz",
    "bench-990-pages.warc.gz",
    "cc-main-2014-35-sample.warc",
    "cc-main-2020-34-slice.warc.gz",
    "cc-main-2024-22-one-page.warc.gz",
    "wget-2024-sample-0000.warc.gz",
    "wget-2024-sample-0001.warc.gz",
]
BROKEN = [
    "resiliparse-block-sized-records.warc.gz",
    "resiliparse-clipped.warc.gz",
    "warcio-bad.arc",
    "warcio-example-bad-non-chunked.warc.gz",
    "warcio-example-bad.warc.gz.bad",
    "warcio-example-space-in-target-uri.warc.gz",
    "warcio-example-trunc.warc",
    "warcio-example-wget-bad-target-uri.warc.gz",
    "warcio-example-wrong-chunks.warc.gz",
    "warcio-example.arc.gz",
]
HTML = ("text/html", "application/xhtml+xml")
DAMAGED_SAMPLES = ["cc-main-2020-34-slice.warc.gz", "cc-main-2014-35-sample.warc", "wget-2024-sample-0001.warc.gz"]
DAMAGE_KINDS = ["truncate", "overwrite", "cut"]
TRIALS_PER_KIND = 112  # 3 samples x 3 kinds x 112 = 1,008 random corruptions


@dataclass(frozen=True)
class Record:
    """warcio's view of one record of an undamaged file."""

    record_id: str | None
    start: int
    end: int
    html_200: bool


def warcio_records(path: Path, opener=open) -> list[Record]:
    records = []
    with opener(path, "rb") as f:
        it = ArchiveIterator(f)
        for record in it:
            http = record.http_headers
            mime = ((http and http.get_header("Content-Type")) or "").split(";")[0].strip().lower()
            html_200 = record.rec_type == "response" and http is not None and http.get_statuscode() == "200"
            it.read_to_end()
            start, length = it.member_info
            records.append(
                Record(
                    record.rec_headers.get_header("WARC-Record-ID"), start, start + length, html_200 and mime in HTML
                )
            )
    return records


def datatrove_documents(path: Path) -> dict:
    return {d.id: d for d in WarcReader(str(path.parent)).read_file(path.name)}


def read(path: Path) -> tuple[list, Counter]:
    counts: Counter = Counter()
    return list(iter_html_documents(str(path), counts)), counts


def assert_counts_add_up(counts: Counter) -> None:
    skipped = sum(v for k, v in counts.items() if k.startswith("skipped_"))
    assert counts["records"] == counts["html_documents"] + skipped


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_warcs_keep_datatrove_200_html_and_what_its_sniffing_lost(shared_data, name):
    path = shared_data / "warc" / name
    docs, counts = read(path)
    reference = datatrove_documents(path)
    records = warcio_records(path)
    html_200 = {r.record_id for r in records if r.html_200}

    assert counts["html_documents"] == len(docs) > 0
    assert counts["records"] == len(records)
    assert counts["corrupt_record"] == counts["unreadable_file"] == 0
    assert_counts_add_up(counts)
    ours = [d.id for d in docs]
    # datatrove's documents that are HTTP 200 HTML responses, in the same order, with identical id and text
    assert [i for i in ours if i in reference] == [i for i in reference if i in html_200]
    # and more: pages served as HTML that datatrove dropped after libmagic sniffed their body as non-HTML
    lost_by_datatrove = set(ours) - set(reference)
    assert lost_by_datatrove <= html_200
    assert len(html_200) - len(ours) == counts["skipped_undecodable"] + counts["skipped_empty"]
    for doc in docs:
        if doc.id in reference:
            assert doc.text == reference[doc.id].text
            assert doc.metadata["url"] == reference[doc.id].metadata["url"]
            assert doc.metadata["crawl_date"] == reference[doc.id].metadata["date"]
        assert doc.metadata["warc_file"] == str(path)
        assert doc.metadata["content_type"] in HTML


# HTML pages that the reader keeps and datatrove loses to libmagic, in the samples without
# WARC-Identified-Payload-Type headers (measured: leading blank lines, XML declarations before XHTML doctypes).
GAINED_OVER_DATATROVE = {
    "bench-990-pages.warc.gz": 79,
    "cc-main-2014-35-sample.warc": 2,
    "wget-2024-sample-0000.warc.gz": 1,
    "wget-2024-sample-0001.warc.gz": 1,
    "archive-it-2008-example.warc.gz": 0,
}


@pytest.mark.parametrize("name, gained", sorted(GAINED_OVER_DATATROVE.items()))
def test_headerless_samples_yield_the_html_pages_libmagic_rejects(shared_data, name, gained):
    path = shared_data / "warc" / name
    docs, counts = read(path)
    assert len({d.id for d in docs} - set(datatrove_documents(path))) == gained
    assert counts["payload_html_by_content_type"] == len(docs) + counts["skipped_undecodable"] + counts["skipped_empty"]


def test_commoncrawl_slice_has_the_16_html_pages_of_the_data_readme(shared_data):
    docs, counts = read(shared_data / "warc" / "cc-main-2020-34-slice.warc.gz")
    assert len(docs) == 16
    assert len({d.metadata["url"] for d in docs}) == 16


@pytest.mark.parametrize("name", ["cc-main-2020-34-slice.warc.gz", "cc-main-2014-35-sample.warc"])
def test_offsets_point_at_the_record(shared_data, name):
    path = shared_data / "warc" / name
    docs, _ = read(path)
    with open(path, "rb") as f:
        for doc in docs:
            f.seek(doc.metadata["warc_offset"])
            record = next(iter(ArchiveIterator(f)))
            assert record.rec_headers.get_header("WARC-Record-ID") == doc.id
            assert record.rec_headers.get_header("WARC-Date") == doc.metadata["crawl_date"]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_archives_never_raise_and_keep_what_datatrove_reads_intact(shared_data, name):
    path = shared_data / "warc" / "broken" / name
    docs, counts = read(path)
    assert_counts_add_up(counts)
    assert counts["unreadable_file"] <= 1
    try:
        reference = datatrove_documents(path)
    except Exception:  # datatrove itself fails on some of these files
        reference = None
    if reference is not None:
        for doc in docs:
            if doc.id in reference:
                assert doc.text == reference[doc.id].text


@pytest.mark.parametrize(
    "name, corrupt, records",
    [
        ("resiliparse-clipped.warc.gz", 1, 0),  # its only record is cut off
        ("warcio-example-trunc.warc", 1, 3),  # a response shorter than its Content-Length, records around it
        ("warcio-example-wrong-chunks.warc.gz", 1, 1),  # block digest fails; the request after it is read
        ("warcio-bad.arc", 1, 0),  # invalid ARC lengths; a plain ARC cannot be resynchronised
    ],
)
def test_damage_in_broken_archives_is_counted(shared_data, name, corrupt, records):
    docs, counts = read(shared_data / "warc" / "broken" / name)
    assert counts["corrupt_record"] == corrupt
    assert counts["records"] == records
    assert docs == []


@pytest.mark.parametrize("name", ["warcio-example-bad-non-chunked.warc.gz", "warcio-example-bad.warc.gz.bad"])
def test_gzip_that_is_not_per_record_is_read_as_one_stream(shared_data, name):
    path = shared_data / "warc" / "broken" / name
    docs, counts = read(path)
    records = warcio_records(path, opener=gzip.open)  # warcio itself stops after the first record
    assert counts["records"] == len(records) and counts["corrupt_record"] == 0
    assert [d.id for d in docs] == [r.record_id for r in records if r.html_200] != []


def test_arc_records_get_datatrove_text_and_an_id_from_their_place(shared_data):
    path = shared_data / "warc" / "broken" / "warcio-example.arc.gz"
    docs, counts = read(path)
    (reference,) = datatrove_documents(path).values()  # datatrove gives ARC records no id
    assert len(docs) == 1 and docs[0].text == reference.text
    assert docs[0].id == f"{path}/{docs[0].metadata['warc_offset']}"


def test_files_that_are_no_archive_are_unreadable(tmp_path, shared_data):
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    for path in (shared_data / "README.md", empty, tmp_path / "missing.warc.gz"):
        docs, counts = read(path)
        assert docs == [] and counts == Counter(unreadable_file=1), path


def damage(data: bytes, kind: str, rng: random.Random) -> tuple[bytes, int, int]:
    """The damaged bytes, and the range [start, end) of the original that is damaged."""
    start = rng.randrange(1, len(data) - 1)
    if kind == "truncate":
        return data[:start], start, len(data)
    end = min(len(data), start + rng.randrange(16, 4000))
    if kind == "overwrite":
        return data[:start] + rng.randbytes(end - start) + data[end:], start, end
    return data[:start] + data[end:], start, end


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
@pytest.mark.parametrize("name", DAMAGED_SAMPLES)
def test_records_before_and_after_random_damage_are_kept(tmp_path, shared_data, name, kind):
    original = shared_data / "warc" / name
    data = original.read_bytes()
    clean_docs, _ = read(original)
    clean = {d.id: d for d in clean_docs}
    starts = {r.record_id: r.start for r in warcio_records(original)}
    ends = {r.record_id: r.end for r in warcio_records(original)}
    boundaries = set(starts.values()) | set(ends.values())
    rng = random.Random(f"{name}/{kind}")
    for trial in range(TRIALS_PER_KIND):
        damaged_bytes, start, end = damage(data, kind, rng)
        damaged = tmp_path / f"{trial}-{name}"
        damaged.write_bytes(damaged_bytes)
        docs, counts = read(damaged)
        kept = {d.id: d for d in docs}
        intact = [i for i in clean if ends[i] <= start or starts[i] >= end]
        context = f"{kind} {start}:{end} of {name}: {dict(counts)}"
        assert set(intact) <= set(kept), context
        for doc_id, doc in kept.items():  # no damaged text gets through
            assert doc.text == clean[doc_id].text, context
            assert doc.metadata["warc_file"] == str(damaged)
        # gzip checks every member; bytes overwritten in a plain record without a block digest go unseen
        detectable = name.endswith(".gz") or kind != "overwrite"
        if detectable and (start not in boundaries or (kind != "truncate" and end not in boundaries)):
            assert counts["corrupt_record"] >= 1, context
        assert counts["unreadable_file"] == 0, context
        assert_counts_add_up(counts)
