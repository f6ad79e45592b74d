"""The HTML decision on the real responses of the sample WARCs: trust the Content-Type, sniff only without one."""

from __future__ import annotations

from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from fineforge.tasks.filter.payload_type import (
    HTML_TYPES,
    PayloadDecision,
    declared_decision,
    has_html_signature,
    media_type,
    sniffed_decision,
    sniffed_type,
)

HEADERLESS = [
    "archive-it-2008-example.warc.gz",
    "bench-990-pages.warc.gz",
    "cc-main-2014-35-sample.warc",
    "wget-2024-sample-0000.warc.gz",
    "wget-2024-sample-0001.warc.gz",
]


def responses(path: Path) -> list[tuple[str, bytes]]:
    """(HTTP media type, body) of the HTTP 200 responses with a body."""
    found = []
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            http = record.http_headers
            if record.rec_type == "response" and http is not None and http.get_statuscode() == "200":
                body = record.content_stream().read()
                if body:
                    found.append((media_type(http.get_header("Content-Type")), body))
    return found


@pytest.fixture(scope="module")
def sample_responses(shared_data) -> list[tuple[str, bytes]]:
    return [response for name in HEADERLESS for response in responses(shared_data / "warc" / name)]


def test_every_page_served_as_html_has_an_html_signature_and_nothing_else_does(sample_responses):
    html = [body for declared, body in sample_responses if declared in HTML_TYPES]
    other = [body for declared, body in sample_responses if declared not in HTML_TYPES]
    assert len(html) > 1000 and len(other) > 100  # robots.txt, RSS, JavaScript, CSS, images, Flash
    assert all(has_html_signature(body) for body in html)
    assert not any(has_html_signature(body) for body in other)


def test_libmagic_alone_loses_real_html_pages_that_sniffing_by_signature_keeps(sample_responses):
    html = [body for declared, body in sample_responses if declared in HTML_TYPES]
    lost = [body for body in html if sniffed_type(body) not in HTML_TYPES]
    assert len(lost) >= 80  # JavaScript (leading blank lines), XML (an XHTML declaration), plain text...
    assert all(sniffed_decision(body) == PayloadDecision(True, "sniffed_markup", "text/html") for body in lost)


@pytest.mark.parametrize(
    "http_type, identified, expected",
    [
        ("text/html; charset=UTF-8", None, PayloadDecision(True, "content_type", "text/html")),
        ("Application/XHTML+XML", "text/plain", PayloadDecision(True, "content_type", "application/xhtml+xml")),
        ("text/html", "application/pdf", PayloadDecision(True, "content_type", "text/html")),
        ("image/png", "text/html", PayloadDecision(False, "content_type", "image/png")),
        ("text/plain", None, PayloadDecision(False, "content_type", "text/plain")),
        ("application/octet-stream", "application/xhtml+xml", PayloadDecision(True, "identified_type",
                                                                              "application/xhtml+xml")),
        (None, "image/jpeg", PayloadDecision(False, "identified_type", "image/jpeg")),
        ("", None, None),
        ("*/*", "application/octet-stream", None),
    ],
)
def test_headers_decide_unless_missing_or_generic(http_type, identified, expected):
    assert declared_decision(http_type, identified) == expected


def test_without_headers_a_real_page_is_sniffed_and_counted_by_reason(shared_data):
    (page, *_) = responses(shared_data / "warc" / "wget-2024-sample-0000.warc.gz")
    robots = next(body for declared, body in responses(shared_data / "warc" / "archive-it-2008-example.warc.gz")
                  if declared == "text/plain" and body.startswith(b"User-agent"))
    assert page[0] == "text/html"
    assert sniffed_decision(page[1]).count_name == "payload_html_by_sniffed_markup"
    assert sniffed_decision(robots).count_name == "payload_non_html_by_sniffed_libmagic"
