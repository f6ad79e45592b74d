"""A local folder laid out like the CommonCrawl bucket (`crawl-data/<dump>/warc.paths.gz` and the WARC files it
lists), made of the real sample WARCs: the source of a build whose dump spec (`latest`, `CC-MAIN-*`) is resolved
when it runs."""

from __future__ import annotations

import gzip
from pathlib import Path

SEGMENT = "segments/1715971057216.39/warc"


def write_dump(bucket: Path, dump: str, warcs: list[Path]) -> list[Path]:
    """List `warcs` (linked into the dump's segment folder) in the dump's warc.paths.gz; return their paths there."""
    segment = bucket / "crawl-data" / dump / SEGMENT
    segment.mkdir(parents=True, exist_ok=True)
    listed = []
    for warc in warcs:
        link = segment / warc.name
        if not link.exists():
            link.symlink_to(warc.resolve())
        listed.append(link)
    lines = "".join(f"{path.relative_to(bucket)}\n" for path in listed)
    (bucket / "crawl-data" / dump / "warc.paths.gz").write_bytes(gzip.compress(lines.encode()))
    return listed
