"""Property-based tests of the WARC reader on generated archives (hypothesis).

Archives are built from random records: random WARC and HTTP headers, HTML bodies in several charsets with
or without a charset declaration, chunked transfer encoding, gzip or deflate content encoding, with or
without a block digest, as plain or gzip-per-record files. Then some are damaged: a wrong Content-Length,
a truncation, overwritten or cut bytes. Properties: reading never raises and never hangs (a time limit per
archive), every record a clean reader (warcio + datatrove's decoding) returns from an undamaged part is
returned, with the same text, and no damaged text gets through where the damage can be seen (a gzip CRC or
a block digest; bytes changed in a plain record without a digest look like any other record).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import signal
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.readers.warc import process_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warcio.archiveiterator import ArchiveIterator

from fineforge.tasks.filter.warc_records import _headers_saying_html, _ReadRecord, iter_html_documents

READ_SECONDS = 20  # far more than any generated archive needs: a hang fails instead of blocking the run
FUZZ_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
CHARSETS = ["utf-8", "latin-1", "cp1252", "shift_jis", "koi8-r", "utf-16"]
HTML_CONTENT_TYPES = ["text/html", "application/xhtml+xml", "TEXT/HTML"]
OTHER_CONTENT_TYPES = ["image/png", "text/plain", "application/pdf"]
GENERIC_CONTENT_TYPES = [None, "application/octet-stream"]
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=":"), max_size=30)


class ReadTookTooLong(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise ReadTookTooLong(f"reading took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class GeneratedRecord:
    record_id: str
    data: bytes  # as written in the file (a gzip member for gzip files)
    is_html_page: bool  # an HTTP 200 response the reader must decide is HTML
    gzipped: bool  # a gzip member: its CRC covers the whole record
    digest: bool  # a WARC-Block-Digest: covers the block (not the WARC header), while the header itself is intact

    def sees_damage(self, first: int, start: int, end: int) -> bool:
        """Whether damage to the file's bytes [start, end) cannot go unseen in this record (at `first`)."""
        if self.gzipped or not self.digest:
            return self.gzipped
        digest_at = self.data.index(b"WARC-Block-Digest")
        return end <= first + digest_at or start >= first + self.data.index(b"\r\n", digest_at)


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, rest = b"", body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[:size], rest[size:]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    if rest:
        out += b"%x\r\n%s\r\n" % (len(rest), rest)
    return out + b"0\r\n\r\n"


@st.composite
def http_response(draw) -> tuple[bytes, bool]:
    """An HTTP response block, and whether it is a 200 HTML page by the reader's rule."""
    charset = draw(st.sampled_from(CHARSETS))
    text = draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=300))
    declared = draw(st.sampled_from([f'<meta charset="{charset}">', "", '<meta charset="bogus-8">']))
    html = f"<!DOCTYPE html><html><head>{declared}<title>t</title></head><body><p>{text}</p></body></html>"
    body = html.encode(charset, errors="xmlcharrefreplace")
    kind = draw(st.sampled_from(["html", "other", "generic"]))
    content_type = draw(st.sampled_from({"html": HTML_CONTENT_TYPES, "other": OTHER_CONTENT_TYPES,
                                         "generic": GENERIC_CONTENT_TYPES}[kind]))  # fmt: skip
    headers = [(f"X-{draw(HEADER_TEXT)}", draw(HEADER_TEXT)) for _ in range(draw(st.integers(0, 3)))]
    if content_type is not None:
        charset_parameter = draw(st.sampled_from(["", f"; charset={charset}", "; charset=nonsense"]))
        headers.append(("Content-Type", content_type + charset_parameter))
    encoding = draw(st.sampled_from([None, "gzip", "deflate"]))
    if encoding == "gzip":
        body = gzip.compress(body, mtime=0)
    elif encoding == "deflate":
        body = zlib.compress(body)
    if encoding:
        headers.append(("Content-Encoding", encoding))
    if draw(st.booleans()):
        body = chunked(body, draw(st.lists(st.integers(1, 200), max_size=5)))
        headers.append(("Transfer-Encoding", "chunked"))
    else:
        headers.append(("Content-Length", str(len(body))))
    status = draw(st.sampled_from(["200 OK", "200 OK", "404 Not Found", "301 Moved"]))
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    is_html_page = status.startswith("200") and kind in ("html", "generic")
    return head.encode("latin-1") + body, is_html_page


@st.composite
def warc_record(draw, index: int, gzipped: bool) -> GeneratedRecord:
    block, is_html_page = draw(http_response())
    record_id = f"<urn:uuid:00000000-0000-0000-0000-{index:012d}>"
    headers = [
        ("WARC-Type", "response"),
        ("WARC-Record-ID", record_id),
        ("WARC-Target-URI", f"http://example.org/page/{index}"),
        ("WARC-Date", "2024-04-25T10:00:00Z"),
        ("Content-Type", "application/http; msgtype=response"),
    ]
    digest = draw(st.booleans())
    if digest:
        headers.append(("WARC-Block-Digest", "sha1:" + base64.b32encode(hashlib.sha1(block).digest()).decode()))
    headers += [(f"X-{draw(HEADER_TEXT)}", draw(HEADER_TEXT)) for _ in range(draw(st.integers(0, 2)))]
    headers.append(("Content-Length", str(len(block))))
    data = ("WARC/1.0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode() + block + b"\r\n\r\n"
    written = gzip.compress(data, mtime=0) if gzipped else data
    return GeneratedRecord(record_id, written, is_html_page, gzipped, digest)


@st.composite
def archive(draw) -> tuple[list[GeneratedRecord], bool]:
    gzipped = draw(st.booleans())
    count = draw(st.integers(1, 6))
    return [draw(warc_record(index, gzipped)) for index in range(count)], gzipped


def clean_reader_documents(record: GeneratedRecord) -> dict[str, str]:
    """What warcio and datatrove's decoding return for one undamaged record that is an HTML page."""
    if not record.is_html_page:
        return {}
    parsed = next(iter(ArchiveIterator(io.BytesIO(record.data))))
    content = parsed.content_stream().read()
    data = process_record(_ReadRecord(parsed.rec_type, _headers_saying_html(parsed.rec_headers), content))
    return {record.record_id: data["text"]} if data and data["text"] else {}


def read_archive(path: Path) -> tuple[dict[str, str], Counter]:
    counts: Counter = Counter()
    with time_limit(READ_SECONDS):
        documents = {d.id: d.text for d in iter_html_documents(str(path), counts)}
    return documents, counts


def record_ranges(records: list[GeneratedRecord]) -> list[tuple[int, int]]:
    ranges, start = [], 0
    for record in records:
        ranges.append((start, start + len(record.data)))
        start += len(record.data)
    return ranges


@FUZZ_SETTINGS
@given(generated=archive())
def test_generated_archives_are_read_like_a_clean_reader(tmp_path, generated):
    records, _ = generated
    path = tmp_path / "generated.warc"
    path.write_bytes(b"".join(r.data for r in records))
    documents, counts = read_archive(path)
    expected = {i: t for r in records for i, t in clean_reader_documents(r).items()}
    assert documents == expected
    assert counts["records"] == len(records) and counts["corrupt_record"] == counts["unreadable_file"] == 0


@st.composite
def damaged_archive(draw):
    records, gzipped = draw(archive())
    data = b"".join(r.data for r in records)
    ranges = record_ranges(records)
    kind = draw(st.sampled_from(["length", "truncate", "overwrite", "cut"]))
    if kind == "length" and not gzipped:
        victim = draw(st.integers(0, len(records) - 1))
        start, end = ranges[victim]
        old = records[victim].data
        length_at = old.index(b"\r\nContent-Length: ") + 2  # the WARC header's (not a random X-...Content-Length)
        stop = old.index(b"\r\n", length_at)
        delta = draw(st.sampled_from([-7, -1, 1, 3, 500]))
        new = old[:length_at] + b"Content-Length: %d" % max(int(old[length_at + 16 : stop]) + delta, 0) + old[stop:]
        block_end = end - 4 + delta  # where its block now ends, in the undamaged file's offsets
        # a block stretched to the line breaks that end a later record reads as a valid record: the records it
        # swallowed are gone without a trace
        ends = (last for _, last in ranges if end < last and block_end <= last and not data[block_end:last].strip())
        swallowed_to = next(ends, end)
        return data[:start] + new + data[end:], (start, swallowed_to), ranges, records
    cut_at = draw(st.integers(1, max(1, len(data) - 1)))
    if kind in ("truncate", "length"):
        return data[:cut_at], (cut_at, len(data)), ranges, records
    end = min(len(data), cut_at + draw(st.integers(1, 400)))
    if kind == "overwrite":
        noise = draw(st.binary(min_size=end - cut_at, max_size=end - cut_at))
        return data[:cut_at] + noise + data[end:], (cut_at, end), ranges, records
    return data[:cut_at] + data[end:], (cut_at, end), ranges, records


@FUZZ_SETTINGS
@given(damaged=damaged_archive())
def test_damaged_archives_never_raise_and_keep_every_undamaged_record(tmp_path, damaged):
    data, (start, end), ranges, records = damaged
    path = tmp_path / "damaged.warc"
    path.write_bytes(data)
    documents, counts = read_archive(path)
    for record, (first, last) in zip(records, ranges, strict=True):
        if last <= start or first >= end:  # untouched by the damage (and, after a cut, shifted)
            for record_id, text in clean_reader_documents(record).items():
                assert documents.get(record_id) == text, (record_id, dict(counts))
    seen = {r.record_id: r.sees_damage(first, start, end) for r, (first, last) in zip(records, ranges, strict=True)}
    damaged = [r for r, (first, last) in zip(records, ranges, strict=True) if first < end and last > start]
    by_id = {r.record_id: r for r in records}
    for record_id, text in documents.items():  # no damaged text gets through where damage can be seen
        original = by_id.get(record_id)
        if original is None:  # the damage rewrote a plain record's WARC header (no digest covers it, gzip's CRC does)
            assert not records[0].gzipped, (record_id, dict(counts))
            if all(seen[r.record_id] for r in damaged):  # the blocks are covered: the text is one of them, intact
                assert text in {t for r in damaged for t in clean_reader_documents(r).values()}
        elif seen[record_id]:
            assert clean_reader_documents(original).get(record_id) == text
