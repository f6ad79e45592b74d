"""Stream the HTML responses of one WARC (or ARC) file as datatrove Documents, surviving damage.

Records are parsed by warcio and turned into text exactly as datatrove's ``WarcReader`` does (its own
``process_record`` decodes them), so ids and HTML equal the reference. fineforge keeps only HTTP 200 responses
that are HTML pages, decided by ``payload_type`` (the HTTP Content-Type is trusted; the body is sniffed only
when that header is missing or generic) - a deliberate difference from datatrove, which trusts only the
crawler's identified payload type and otherwise libmagic, and so loses real pages that libmagic calls
JavaScript, XML or plain text. With ``html_records="datatrove"`` (the FineWeb-exact configuration) it decides
as datatrove does, for every HTTP status, so that both read the same documents. Every record is checked before
it is yielded: a gzip error, a record shorter than its Content-Length, a record not followed by its blank
lines, a header holding two records' headers, or a failed WARC block digest marks the record as damaged. A
damaged record is counted (``corrupt_record``), logged with the file name and offset, and skipped; reading
goes on at the next gzip member (gzip-per-record files) or the next ``WARC/`` version mark (plain files:
damage may have eaten the line break before it; after a record followed by no record header, the mark is
looked for inside that record, whose Content-Length may have been too long), so every readable record after
the damage is kept. A file that holds no readable record at all is counted as ``unreadable_file``.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from datatrove.data import Document
from datatrove.pipeline.readers.warc import process_record
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import DecompressingBufferedReader
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders

from fineforge.tasks.filter.payload_type import (
    HTML_TYPES,
    HtmlRecords,
    datatrove_decision,
    declared_decision,
    sniffed_decision,
)
from fineforge.tasks.filter.remote import RemoteReadConfig, open_warc

log = logging.getLogger(__name__)

IDENTIFIED_TYPE = "WARC-Identified-Payload-Type"
UNIQUE_HEADERS = ("warc-type", "warc-record-id")  # twice in one header: a damaged line joined two records
GZIP_MAGIC = b"\x1f\x8b"
GZIP_MEMBER_START = b"\x1f\x8b\x08"  # magic + deflate method: where a gzip member can begin
WARC_HEADER_LINE = b"\nWARC/"  # a plain WARC record begins at a line "WARC/<version>"
WARC_VERSION = b"WARC/"  # where a plain record may begin after damage (a damaged line may run into it)
ARC_FILE_START = b"filedesc://"
HEAD_BYTES = 4096  # how much of a file's start is looked at to tell gzip/plain and WARC/ARC apart
SCAN_BLOCK_BYTES = 1 << 20  # how much is read at a time while looking for the next record


class _Damage(Exception):
    """A record at `offset` could not be read intact."""

    def __init__(self, offset: int, reason: str, header_read: bool = True):
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.header_read = header_read  # False: no record header could be parsed at `offset`


class _NotChunkedGzip(Exception):
    """The file is gzip, but not one gzip member per record: it can only be read as one stream."""


class _StrictReader(DecompressingBufferedReader):
    """warcio's reader, except that a gzip error inside a member raises instead of silently ending it."""

    def _decompress(self, data: bytes) -> bytes:
        if self.decompressor is not None and data and self.num_block_read:
            return self.decompressor.decompress(data)
        return super()._decompress(data)


class _CheckedArchiveIterator(ArchiveIterator):
    """warcio's iterator on the strict reader, signalling non-chunked gzip files by a typed exception."""

    def __init__(self, fileobj: IO[bytes]):
        super().__init__(fileobj, check_digests=True)
        self.reader = _StrictReader(self.fh)

    def _raise_invalid_gzip_err(self) -> None:
        raise _NotChunkedGzip()


@dataclass
class _ReadRecord:
    """A record whose content was already read: what datatrove's `process_record` looks at."""

    rec_type: str
    rec_headers: StatusAndHeaders
    content: bytes

    def content_stream(self) -> io.BytesIO:
        return io.BytesIO(self.content)


def _headers_saying_html(headers: StatusAndHeaders) -> StatusAndHeaders:
    """A copy of the record headers whose identified payload type is HTML: datatrove then only decodes."""
    kept = [(name, value) for name, value in headers.headers if name.lower() != IDENTIFIED_TYPE.lower()]
    return StatusAndHeaders(headers.statusline, [*kept, (IDENTIFIED_TYPE, "text/html")], protocol=headers.protocol)


def _opens_a_record(member_head: bytes) -> bool:
    """True when these bytes are the start of a gzip member whose content begins a WARC or ARC record."""
    try:
        content = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(member_head)
    except zlib.error:
        return False
    return content.startswith((b"WARC/", ARC_FILE_START))


class _WarcFileReader:
    """Reads one open archive (or the records of one byte range of it, see `warc_ranges`): records in order,
    resynchronising after each damaged region."""

    def __init__(self, uri: str, fh: IO[bytes], counts: Counter, start: int = 0, end: int | None = None,
                 html_records: HtmlRecords = "content-type"):  # fmt: skip
        self.uri = uri
        self.html_records = html_records
        self.fh = fh
        self.counts = counts
        self.start = start  # a later range begins at the first record at or after `start`
        self.end = end  # records starting at or after `end` are the next range's (None: read to the end)
        self.stream: IO[bytes] = fh
        self.gzipped = False
        self.arc = False  # an ARC file begins with its filedesc:// record; warcio reads any text line as ARC
        self.resyncable = True
        self.records_seen = 0  # intact records read from this file so far
        self.records_to_skip = 0  # records already handled before switching to whole-gzip reading
        # the last plain WARC record's offset when what follows it is no record header: its Content-Length may
        # have been too long, swallowing the start of the next record, which a resync must then look for inside it
        self.overrun_from: int | None = None

    def documents(self) -> Iterator[Document]:
        head = self.fh.read(HEAD_BYTES)
        self.fh.seek(0)
        if not head:
            self._unreadable("empty file")
            return
        self.gzipped = self._looks_gzipped(head)
        if self.gzipped:
            try:
                head = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(head)
            except zlib.error:
                head = b""
        self.arc = head.startswith(ARC_FILE_START)
        self.resyncable = self.gzipped or not self.arc
        if not self.gzipped or self.arc:  # only gzip WARC files are read by ranges: the first reads it whole
            if self.start:
                return
            self.end = None
        damage_at_start: _Damage | None = None
        position = self._first_record_from(self.start) if self.start else 0
        scanning = False
        while position is not None and not self._past_end(position):
            try:
                yield from self._read_from(position)
                position = None
            except _NotChunkedGzip:
                position = self._not_chunked()
                scanning = False
            except _Damage as damage:
                false_start = scanning and damage.offset == position and not damage.header_read
                if not false_start:
                    if damage.offset == 0 and self.records_seen == 0:
                        damage_at_start = damage  # counted once we know whether anything is readable
                    else:
                        self._corrupt(damage)
                overrun = self.overrun_from if not damage.header_read else None
                position = self._next_record_start((damage.offset if overrun is None else overrun) + 1)
                self.overrun_from = None
                scanning = True
        if self.start:
            return  # the file as a whole is judged by the range that begins it
        if not self._has_records() and (damage_at_start is None or not damage_at_start.header_read):
            self._unreadable("no WARC/ARC record in it")
        elif damage_at_start is not None:
            self._corrupt(damage_at_start)

    def _past_end(self, offset: int) -> bool:
        """Whether a record at `offset` belongs to a later range."""
        return self.end is not None and offset >= self.end

    def _has_records(self) -> bool:
        """Whether the file holds a record: one was read, or (a range that ends before the file) one begins later."""
        return self.records_seen > 0 or (self.end is not None and self._first_record_from(self.end) is not None)

    def _first_record_from(self, offset: int) -> int | None:
        """Where the first gzip member that opens a WARC record begins, at or after `offset` (None: nowhere).

        Unlike a resync after damage, bytes that only look like a member start (inside compressed data) are
        passed over here: a range must begin where a reader of the whole file would find a record."""
        position = self._next_record_start(offset)
        while position is not None:
            self.stream.seek(position)
            if _opens_a_record(self.stream.read(HEAD_BYTES)):
                return position
            position = self._next_record_start(position + 1)
        return None

    def _not_chunked(self) -> int | None:
        """Where to go on when gzip members do not match records: the whole file read as one gzip stream, from
        the start, by the reader of the whole file or of its first range (a file that is one gzip stream, maybe
        after a first member of its own, has no later member that opens a record: its later ranges read
        nothing). A later range that meets such a member counts the rest of the range as one damaged record."""
        if not self.start:
            self.end = None  # one gzip stream: its records have no compressed offsets to split by
            return self._switch_to_whole_gzip()
        self.counts["corrupt_record"] += 1
        log.warning(
            "%s: gzip members stop matching records in the range %d-%d; rest of the range skipped",
            self.uri,
            self.start,
            self.end,
        )
        return None

    def _looks_gzipped(self, head: bytes) -> bool:
        """Gzip when the file starts so; when its start is damaged, when a gzip member holding a WARC/ARC
        record starts before any plain WARC header line in its first block (a damaged first member must not
        hide the records after it; a gzip-encoded page inside a plain record is no such member)."""
        if head.startswith(GZIP_MAGIC):
            return True
        if head.startswith((b"WARC/", ARC_FILE_START)):
            return False
        block = self.fh.read(SCAN_BLOCK_BYTES)
        self.fh.seek(0)
        header = block.find(WARC_HEADER_LINE)
        member = block.find(GZIP_MEMBER_START)
        while member >= 0 and (header < 0 or member < header):
            if _opens_a_record(block[member : member + HEAD_BYTES]):
                return True
            member = block.find(GZIP_MEMBER_START, member + 1)
        return False

    def _read_from(self, position: int) -> Iterator[Document]:
        """Documents of the records from `position` on; raises _Damage at the first damaged record."""
        self.stream.seek(position)
        records = _CheckedArchiveIterator(self.stream)
        while True:
            offset = records.offset
            if self._past_end(offset):
                return
            record = None
            try:
                record = next(records, None)
                if record is None:
                    self._check_nothing_left(records.offset)
                    return
                if record.format == "arc" and not self.arc:
                    raise _Damage(offset, "not a WARC record", header_read=False)
                document, reason = self._document(record, offset)
                self._check_intact(records, record, offset)
            except (_NotChunkedGzip, _Damage):
                raise
            except Exception as e:  # warcio and zlib raise many kinds of errors on bad bytes
                raise _Damage(offset, f"{type(e).__name__}: {e}".strip(), record is not None) from e
            self.records_seen += 1
            self.overrun_from = offset if self._maybe_overran(records, record) else None
            if self.records_to_skip:
                self.records_to_skip -= 1
                continue
            self.counts["records"] += 1
            if document is None:
                self.counts[f"skipped_{reason}"] += 1
                continue
            self.counts["html_documents"] += 1
            yield document

    def _document(self, record: ArcWarcRecord, offset: int) -> tuple[Document | None, str]:
        """The HTML document of a record, or None and why it is skipped."""
        if record.rec_type != "response":
            return None, "non_response"
        identified_type = record.rec_headers.get_header(IDENTIFIED_TYPE)
        if self.html_records == "datatrove":
            content = b"" if identified_type not in (None, *HTML_TYPES) else record.content_stream().read()
            decision = datatrove_decision(identified_type, content)
        else:
            if record.http_headers is None:
                return None, "non_http"
            if record.http_headers.get_statuscode() != "200":
                return None, "non_200"
            decision = declared_decision(record.http_headers.get_header("Content-Type"), identified_type)
            content = b"" if decision is not None and not decision.is_html else record.content_stream().read()
            decision = decision or sniffed_decision(content)
        self.counts[decision.count_name] += 1
        if not decision.is_html:
            return None, "non_html"
        data = process_record(_ReadRecord(record.rec_type, _headers_saying_html(record.rec_headers), content))
        if data is None:
            return None, "undecodable"
        if not data["text"]:
            return None, "empty"
        # datatrove's adapter names a record without a WARC-Record-ID (ARC) by its place in the file
        doc_id = data["id"] or f"{self.uri}/{offset}"
        metadata = {
            "url": data["url"],
            "date": data["date"],
            "file_path": self.uri,
            "warc_file": self.uri,
            "warc_offset": offset,
            "crawl_date": data["date"],
            "content_type": decision.media_type,
        }
        return Document(text=data["text"], id=doc_id, metadata=metadata), ""

    def _check_intact(self, records: _CheckedArchiveIterator, record: ArcWarcRecord, offset: int) -> None:
        """Read the rest of the record; raise _Damage unless it was complete and well-formed."""
        length_header = "Content-Length" if record.format == "warc" else "length"
        names = Counter(name.lower() for name, _ in record.rec_headers.headers)
        if record.format == "warc" and any(names[name] > 1 for name in UNIQUE_HEADERS):
            raise _Damage(offset, "the headers of two records run together (damaged header)")
        if not (record.rec_headers.get_header(length_header) or "").strip().isdigit():
            raise _Damage(offset, f"record header without a valid {length_header} (truncated header?)")
        warnings = records.err_count
        records.read_to_end()
        decompressor = records.reader.decompressor
        if getattr(record.raw_stream, "limit", 0) > 0:
            if decompressor is not None and decompressor.eof and (decompressor.unused_data or self.stream.read(1)):
                raise _NotChunkedGzip()  # gzip members cut across records: readable as one stream
            raise _Damage(offset, "record shorter than its Content-Length (truncated)")
        if records.err_count > warnings:
            raise _Damage(offset, "record not followed by a blank line (wrong Content-Length)")
        if decompressor is not None and not decompressor.eof and records.next_line is None:
            raise _Damage(offset, "gzip member ends early (truncated)")
        if any(problem.startswith("block digest") for problem in record.digest_checker.problems):
            raise _Damage(offset, "WARC-Block-Digest does not match the record")

    def _maybe_overran(self, records: _CheckedArchiveIterator, record: ArcWarcRecord) -> bool:
        """Whether a plain WARC record is followed by a whole line that is no record header."""
        after = records.next_line or b""
        plain = records.reader.decompressor is None and record.format == "warc"
        return plain and after.endswith(b"\n") and not after.startswith(WARC_VERSION)

    def _check_nothing_left(self, end: int) -> None:
        """At the end of iteration: raise _Damage if bytes after the last record are not just blank lines.

        warcio ends quietly on a record cut inside its header; this catches it. A file read as one gzip
        stream reports such a cut itself, as an error.
        """
        if self.stream is not self.fh:
            return
        self.stream.seek(end)
        if self.stream.read(SCAN_BLOCK_BYTES).strip():
            raise _Damage(end, "incomplete record at the end of the file (truncated)", header_read=False)

    def _next_record_start(self, start: int) -> int | None:
        """Offset of the next place a record may begin at or after `start`, or None at the end."""
        if not self.resyncable:
            log.error("%s: cannot resynchronise inside a plain ARC file; rest of the file skipped", self.uri)
            return None
        pattern = GZIP_MEMBER_START if self.gzipped else WARC_VERSION
        try:
            self.stream.seek(start)
            base, carry = start, b""
            while block := self.stream.read(SCAN_BLOCK_BYTES):
                window = carry + block
                found = window.find(pattern)
                if found >= 0:
                    return base + found
                carry = window[-(len(pattern) - 1) :]
                base += len(window) - len(carry)
        except Exception as e:  # a damaged whole-file gzip stream cannot be read past its damage
            log.error("%s: cannot read past offset %d (%s); rest of the file skipped", self.uri, start, e)
        return None

    def _switch_to_whole_gzip(self) -> int:
        """Read the file as one gzip stream from the start, skipping the records already handled.

        Offsets are then positions in the decompressed stream.
        """
        log.warning("%s: gzip members do not match records (not per-record gzip); reading it whole", self.uri)
        self.fh.seek(0)
        self.stream = gzip.GzipFile(fileobj=self.fh, mode="rb")
        self.gzipped = False
        self.records_to_skip, self.records_seen = self.records_seen, 0
        return 0

    def _corrupt(self, damage: _Damage) -> None:
        self.counts["corrupt_record"] += 1
        log.warning("%s: damaged record at offset %d skipped: %s", self.uri, damage.offset, damage.reason)

    def _unreadable(self, reason: str) -> None:
        self.counts["unreadable_file"] += 1
        log.error("%s: unreadable file: %s", self.uri, reason)


def _unreadable_count(start: int) -> str:
    """What a read that fails before its first record counts: the file, or (a later range of it) that range."""
    return "unreadable_range" if start else "unreadable_file"


def _range_note(start: int, end: int | None) -> str:
    return f" for its range [{start}, {end or 'end'})" if start or end is not None else ""


def iter_html_documents(
    uri: str, counts: Counter, remote: RemoteReadConfig | None = None, start: int = 0, end: int | None = None,
    html_records: HtmlRecords = "content-type",
) -> Iterator[Document]:
    """Stream the HTML documents (HTTP 200 HTML pages, see ``payload_type``; with ``html_records="datatrove"``
    what datatrove's WarcReader reads) of one WARC/ARC file, or of the records that start in its byte range
    ``[start, end)`` (see ``warc_ranges``; a file that cannot be split is read whole by its range at 0, its other
    ranges yield nothing).

    ``text`` and ``id`` equal what datatrove's WarcReader yields for the same record; ``metadata`` holds
    url, date and file_path (as datatrove), warc_file, warc_offset (byte offset of the record in the file;
    for a file that is one gzip stream, in the decompressed stream), crawl_date and content_type.
    ``counts`` gets ``records`` (intact records), ``html_documents``, ``skipped_<reason>``,
    ``payload_<html|non_html>_by_<reason>`` (each content decision), ``corrupt_record``, ``unreadable_file``
    and ``unreadable_range`` (a later range of a file, not read at all); remote files add their requests,
    retries and resumptions (see `tasks.filter.remote`). Bad data never raises out of this iterator.
    """
    try:
        fh = open_warc(uri, counts, remote)
    except Exception as e:  # fsspec raises per protocol: OSError, ValueError, ImportError...
        counts[_unreadable_count(start)] += 1
        log.error("%s: unreadable file: cannot open it (%s: %s)%s", uri, type(e).__name__, e, _range_note(start, end))
        return
    with fh:
        reader = _WarcFileReader(uri, fh, counts, start, end, html_records)
        try:
            yield from reader.documents()
        except Exception as e:  # I/O failing outside any one record (a stream that cannot seek, the network)
            counts["corrupt_record" if reader.records_seen else _unreadable_count(start)] += 1
            log.error("%s: reading stopped after %d records: %s: %s", uri, reader.records_seen, type(e).__name__, e)
