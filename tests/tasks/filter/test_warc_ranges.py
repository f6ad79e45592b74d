"""Large WARC files read by byte ranges: the boundary rule on real sample WARCs (a record belongs to the range it
starts in), local and over HTTP, and the filter stage's Spark job with a tiny range size equal to the unsplit one."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from fineforge.tasks.filter.config import FilterConfig
from fineforge.tasks.filter.job import FilterStage, filter_warcs_to_parquet
from fineforge.tasks.filter.remote import RemoteReadConfig
from fineforge.tasks.filter.warc_ranges import WarcRange, file_size, ranges_of, split_file
from fineforge.tasks.filter.warc_records import iter_html_documents
from testkit.fault_server import Fault, FaultyFileServer

WGET = "wget-2024-sample-0000.warc.gz"
SPLIT_FILES = ["archive-it-2008-example.warc.gz", "cc-main-2020-34-slice.warc.gz", WGET,
               "wget-2024-sample-0001.warc.gz", "broken/resiliparse-clipped.warc.gz",
               "broken/warcio-example-wget-bad-target-uri.warc.gz",
               "broken/warcio-example-bad-non-chunked.warc.gz"]  # one member, then the rest as one gzip stream
# Small sample WARCs: two gzip ones (split) and a plain one (read whole). Every range is a Spark task that starts
# its own extraction process, so the build stays at a few ranges; the reader tests above use many more.
BUILD_FILES = ["cc-main-2020-34-slice.warc.gz", "cc-main-2014-35-sample.warc", WGET]
TINY_RANGE = 100 * 1024  # the 136 KB slice becomes 2 ranges, the 214 KB wget sample 3
MEASURED = ("p50_ms", "p99_ms", "histogram")  # extraction CPU time: measured, never equal between two runs


def read(uri: str, start: int = 0, end: int | None = None, remote: RemoteReadConfig | None = None):
    """(id, text, offset) of each document the reader yields for a range, and its counts."""
    counts: Counter = Counter()
    documents = [(d.id, d.text, d.metadata["warc_offset"])
                 for d in iter_html_documents(uri, counts, remote, start, end)]  # fmt: skip
    return documents, counts


def read_ranges(ranges: list[WarcRange], remote: RemoteReadConfig | None = None):
    """The documents of the ranges read one after the other, and their summed counts (remote requests left out)."""
    documents, counts = [], Counter()
    for part in ranges:
        got, got_counts = read(part.uri, part.start, part.end, remote)
        documents += got
        counts += got_counts
    return documents, Counter({k: v for k, v in counts.items() if not k.startswith("remote_")})


def record_offsets(path: Path) -> list[int]:
    """Where each record of a clean gzip WARC begins (warcio's own offsets)."""
    with open(path, "rb") as f:
        records = ArchiveIterator(f)
        return [records.get_record_offset() for _ in records]


@pytest.fixture(scope="module")
def wget(shared_data) -> Path:
    return shared_data / "warc" / WGET


@pytest.mark.parametrize("name", SPLIT_FILES)
@pytest.mark.parametrize("range_bytes", [1024, 7777, 64 * 1024])
def test_ranges_read_in_order_equal_the_whole_file(shared_data, name, range_bytes):
    path = shared_data / "warc" / name
    ranges = ranges_of(str(path), path.stat().st_size, range_bytes)
    assert len(ranges) > 1 or path.stat().st_size <= range_bytes
    whole, whole_counts = read(str(path))
    assert read_ranges(ranges) == (whole, whole_counts)


def test_a_record_straddling_a_boundary_belongs_to_the_range_it_starts_in(wget):
    offsets = record_offsets(wget)
    documents, _ = read(str(wget))
    k = next(i for i, offset in enumerate(offsets) if offset in {d[2] for d in documents} and i > 3)
    boundary = offsets[k] + 10  # inside record k
    before, before_counts = read(str(wget), 0, boundary)
    after, after_counts = read(str(wget), boundary, None)
    assert before[-1][2] == offsets[k]  # read to its end, past the boundary
    assert after_counts["records"] == len(offsets) - k - 1 and before_counts["records"] == k + 1
    assert all(offset > boundary for _, _, offset in after) and before + after == documents


def test_a_boundary_on_a_record_start_gives_the_record_to_the_later_range(wget):
    offsets = record_offsets(wget)
    k = len(offsets) // 2
    before, before_counts = read(str(wget), 0, offsets[k])
    after, after_counts = read(str(wget), offsets[k], None)
    assert before_counts["records"] == k and after_counts["records"] == len(offsets) - k
    assert before + after == read(str(wget))[0]


def test_a_range_with_no_record_start_reads_nothing_and_counts_nothing(wget):
    offsets = record_offsets(wget)
    largest = max(range(len(offsets) - 1), key=lambda i: offsets[i + 1] - offsets[i])
    documents, counts = read(str(wget), offsets[largest] + 1, offsets[largest + 1])
    assert documents == [] and counts == Counter()
    beyond = read(str(wget), offsets[-1] + 1, None)  # after the last record start: the end of the file
    assert beyond == ([], Counter())


def test_the_last_range_reads_to_the_end_of_the_file(wget):
    offsets = record_offsets(wget)
    last = ranges_of(str(wget), wget.stat().st_size, offsets[-3] + 5)[-1]
    assert last.end is None and offsets[-3] < last.start <= offsets[-2]
    documents, counts = read(str(wget), last.start, last.end)
    assert counts["records"] == 2 and not counts["corrupt_record"] and not counts["unreadable_file"]
    assert documents == [d for d in read(str(wget))[0] if d[2] >= offsets[-2]]


def test_a_file_that_cannot_be_split_is_read_whole_by_its_first_range(shared_data):
    for name in ("cc-main-2014-35-sample.warc", "broken/warcio-example.arc.gz"):  # plain WARC, gzip ARC
        path = str(shared_data / "warc" / name)
        assert read(path, 0, 1000) == read(path) and read(path)[1]["records"] > 1
        assert read(path, 1000, 2000) == read(path, 1000, None) == ([], Counter())


def test_planned_ranges(shared_data, tmp_path):
    path = str(shared_data / "warc" / WGET)
    size = file_size(path)
    ranges = ranges_of(path, size, 100_000)
    assert [(r.start, r.end) for r in ranges] == [(0, 100_000), (100_000, 200_000), (200_000, None)]
    assert ranges_of(path, size, size) == [WarcRange(path)] and ranges_of(path, size, None) == [WarcRange(path)]
    plain = str(shared_data / "warc" / "cc-main-2014-35-sample.warc")
    assert split_file(plain, 1024) == [WarcRange(plain)]  # only gzip WARC files are split
    missing = str(tmp_path / "gone.warc.gz")
    assert split_file(missing, 1024) == [WarcRange(missing)]  # its reader reports it, with the reason


def test_ranges_read_over_http_equal_the_local_file(shared_data):
    path = shared_data / "warc" / "cc-main-2020-34-slice.warc.gz"
    faults = [Fault("status", status=503), Fault("reset", after_bytes=20_000)]
    config = RemoteReadConfig(block_bytes=16 * 1024, backoff_base_s=0.05, max_retries=3)
    with FaultyFileServer({"/crawl/slice.warc.gz": path.read_bytes()}, faults) as server:
        uri = server.url("/crawl/slice.warc.gz")
        ranges = split_file(uri, 40_000, config)
        documents, counts = read_ranges(ranges, config)
        starts = {request.start for request in server.requests}
    assert [(r.start, r.end) for r in ranges] == [(0, 40_000), (40_000, 80_000), (80_000, 120_000), (120_000, None)]
    assert {40_000, 80_000, 120_000} <= starts  # each range opened its own Range request at its start
    assert (documents, counts) == read(str(path)) and len(documents) == 16


def _rows(folder: Path) -> list[dict]:
    return pq.read_table(sorted(folder.glob("*.parquet"))).to_pylist()


def _deterministic(stats: dict) -> dict:
    """The statistics that two runs on the same input share: not the measured CPU times, nor bytes_out (the size
    of the part files: each range's part carries its own Parquet footer)."""
    cpu = {k: v for k, v in stats["extraction_cpu"].items() if k not in MEASURED}
    return {**{k: v for k, v in stats.items() if k != "bytes_out"}, "extraction_cpu": cpu}


def test_a_build_by_tiny_ranges_equals_the_unsplit_build(spark, shared_data, tmp_path, caplog):
    uris = [str(shared_data / "warc" / name) for name in BUILD_FILES]
    # No trafilatura duplicate-segment cache: with it, WARC files are not split (test below).
    unsplit = FilterConfig(extraction={"timeout": 30, "deduplicate": False}, warc_range_bytes=None)
    split = unsplit.model_copy(update={"warc_range_bytes": TINY_RANGE})
    whole_stats = filter_warcs_to_parquet(spark, uris, unsplit, tmp_path / "whole", "CC-MAIN-TEST")
    with caplog.at_level(logging.INFO, logger="fineforge.tasks.filter.job"):
        split_stats = filter_warcs_to_parquet(spark, uris, split, tmp_path / "split", "CC-MAIN-TEST")
    assert "3 WARC files read as 6 ranges" in caplog.text
    assert len(list((tmp_path / "split").glob("*.parquet"))) > len(uris)
    rows = _rows(tmp_path / "whole")
    assert _rows(tmp_path / "split") == rows and len(rows) >= 10  # the same documents, in the same order
    assert _deterministic(split_stats) == _deterministic(whole_stats) and split_stats["input_files"] == len(uris)
    # The range size changes how the stage runs, not its output: an earlier build is still complete.
    assert FilterStage(unsplit, uris, "d").fingerprint_parts() == FilterStage(split, uris, "d").fingerprint_parts()


def test_files_are_not_split_while_extraction_carries_state_from_page_to_page():
    assert FilterConfig(warc_range_bytes=4096).splitting_range_bytes() is None  # trafilatura's dedup cache
    assert FilterConfig(extraction={"method": "fineweb"}, warc_range_bytes=4096).splitting_range_bytes() is None
    assert FilterConfig(extraction={"deduplicate": False}, warc_range_bytes=4096).splitting_range_bytes() == 4096
    assert FilterConfig(extraction={"method": "resiliparse"}, warc_range_bytes=4096).splitting_range_bytes() == 4096
    assert FilterConfig(extraction={"enabled": False}, warc_range_bytes=4096).splitting_range_bytes() == 4096
