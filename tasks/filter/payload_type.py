"""Is a WARC response an HTML page? Trust the HTTP Content-Type when it names a type; sniff only when it does not.

datatrove's record processing keeps a record when its `WARC-Identified-Payload-Type` header says HTML and,
when that header is missing (wget, Heritrix/Archive-It, Browsertrix and older crawls do not write it), asks
libmagic. libmagic labels many real pages as JavaScript, XML or plain text (leading blank lines, an XML
declaration before an XHTML doctype...), and they are lost. fineforge decides, in this order:

1. the HTTP `Content-Type` names HTML/XHTML: HTML (`content_type`); it names any other specific type
   (image/png, text/plain, application/pdf...): not HTML (`content_type`);
2. it is missing or generic (application/octet-stream, */*...): the crawler's `WARC-Identified-Payload-Type`
   when present (`identified_type`);
3. else the body is sniffed: the markup signatures of the WHATWG MIME Sniffing standard after leading
   whitespace, an XML declaration (XHTML) and comments, in UTF-8 or UTF-16, mean HTML (`sniffed_markup`); else
   what libmagic says (`sniffed_libmagic`).

Each decision is counted by its reason: `payload_html_by_<reason>` and `payload_non_html_by_<reason>`.

The FineWeb-exact configuration decides as datatrove does instead (`HtmlRecords = "datatrove"`,
`datatrove_decision`): the identified payload type when the record has one, else libmagic, for responses of
every HTTP status - so that its output equals datatrove's byte for byte.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

# Which responses are read as HTML pages: fineforge's rules above (HTTP 200 only) or datatrove's (every status).
HtmlRecords = Literal["content-type", "datatrove"]
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Content types that say nothing about the payload: decide as if there were none.
GENERIC_TYPES = frozenset(
    {
        "",
        "*/*",
        "application/octet-stream",
        "binary/octet-stream",
        "application/binary",
        "application/unknown",
        "unknown/unknown",
        "application/x-unknown-content-type",
        "content/unknown",
    }
)
SNIFF_BYTES = 4096  # how much of the body (after leading whitespace) sniffing looks at
# WHATWG MIME Sniffing, "identify an unknown MIME type": an HTML tag (or comment) opening the resource,
# followed by a space or ">"; fineforge adds <meta and <link, which real pages open with too.
HTML_SIGNATURE = re.compile(
    rb"<(?:!doctype html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p|meta|link|!--)"
    rb"[ >\t\n\r\f]",
    re.IGNORECASE,
)
# What may stand before the first tag: whitespace, a UTF-8 byte-order mark, an XML declaration (XHTML) and
# comments (e.g. Internet Explorer's conditional comments).
PREAMBLE = re.compile(rb"(?:[\t\n\x0c\r ]|\xef\xbb\xbf|<\?xml[^>]*\?>|<!--.*?-->)*", re.DOTALL | re.IGNORECASE)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class PayloadDecision(NamedTuple):
    """Whether a payload is HTML, what decided it, and the media type it was given."""

    is_html: bool
    reason: str  # content_type, identified_type, sniffed_markup or sniffed_libmagic
    media_type: str

    @property
    def count_name(self) -> str:
        """The reader's counter of this decision, e.g. `payload_html_by_content_type`."""
        return f"payload_{'html' if self.is_html else 'non_html'}_by_{self.reason}"


def media_type(header: str | None) -> str:
    """The lower-case `type/subtype` of a Content-Type header value ('' when missing)."""
    return (header or "").split(";", 1)[0].strip().lower()


def has_html_signature(body: bytes) -> bool:
    """True when the body opens with HTML markup (WHATWG's HTML signatures) after its preamble."""
    head = body[: SNIFF_BYTES * 4]
    if head.startswith(UTF16_BOMS):  # UTF-16 pages: look at their characters, not their bytes
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    return HTML_SIGNATURE.match(head, PREAMBLE.match(head).end()) is not None


def sniffed_type(body: bytes) -> str:
    """libmagic's MIME type of the body (what datatrove asks when a record has no identified type)."""
    import magic

    return magic.from_buffer(body, mime=True)


def declared_decision(http_content_type: str | None, identified_type: str | None) -> PayloadDecision | None:
    """The decision the headers make (rules 1 and 2), or None when only the body can tell."""
    declared = media_type(http_content_type)
    if declared not in GENERIC_TYPES:
        return PayloadDecision(declared in HTML_TYPES, "content_type", declared)
    identified = media_type(identified_type)
    if identified not in GENERIC_TYPES:
        return PayloadDecision(identified in HTML_TYPES, "identified_type", identified)
    return None


def sniffed_decision(body: bytes) -> PayloadDecision:
    """The decision from the body alone (rule 3): HTML signatures first, then libmagic."""
    if has_html_signature(body):
        return PayloadDecision(True, "sniffed_markup", "text/html")
    sniffed = sniffed_type(body)
    return PayloadDecision(sniffed in HTML_TYPES, "sniffed_libmagic", sniffed)


def datatrove_decision(identified_type: str | None, body: bytes) -> PayloadDecision:
    """datatrove's decision (its `process_record`): the identified payload type when present, else libmagic."""
    if identified_type is not None:
        return PayloadDecision(identified_type in HTML_TYPES, "identified_type", identified_type)
    sniffed = sniffed_type(body)
    return PayloadDecision(sniffed in HTML_TYPES, "sniffed_libmagic", sniffed)
