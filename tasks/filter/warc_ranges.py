"""Large WARC files split into byte ranges, so that one big file is not one Spark task.

A range ``[start, end)`` of a file holds the records that *start* inside it: its reader begins at the first
gzip member at or after ``start`` that opens a WARC record, and ends with the last record that starts before
``end`` (read to its own end, past ``end`` if it must). Every record starts in exactly one range, so the
ranges of a file, read in order, give the documents of the whole file, in the same order, none lost or read
twice. Only gzip-per-record WARC files (``*.warc.gz``, what CommonCrawl serves) are split: a record of a plain
WARC may hold a line that looks like a record header, and ARC records have no marker to resync on.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from functools import partial

from fineforge.tasks.filter.remote import RemoteReadConfig, is_remote, open_remote

log = logging.getLogger(__name__)

SPLITTABLE_SUFFIX = ".warc.gz"
# Default range size: a CommonCrawl WARC file (~1 GB) becomes ~8 tasks of a few thousand records each.
DEFAULT_RANGE_BYTES = 128 << 20
MIN_RANGE_BYTES = 1 << 10


@dataclass(frozen=True)
class WarcRange:
    """The records of the WARC file `uri` that start in `[start, end)`; `end` None: to the end of the file."""

    uri: str
    start: int = 0
    end: int | None = None

    def __str__(self) -> str:
        return self.uri if self.is_whole_file() else f"{self.uri} [{self.start}, {self.end or 'end'})"

    def is_whole_file(self) -> bool:
        return self.start == 0 and self.end is None


def is_splittable(uri: str) -> bool:
    """Whether a file may be read by ranges: a gzip WARC file (by its name)."""
    return uri.lower().endswith(SPLITTABLE_SUFFIX)


def file_size(uri: str, remote: RemoteReadConfig | None = None) -> int:
    """The size in bytes of a local file, or of a remote one (from the answer to one request of its bytes)."""
    if not is_remote(uri):
        return os.path.getsize(uri)
    with open_remote(uri, Counter(), remote) as stream:
        return stream.raw.size


def ranges_of(uri: str, size: int, range_bytes: int | None) -> list[WarcRange]:
    """The ranges of one file of `size` bytes: `range_bytes` each (the last one to the end of the file); the
    whole file as one range when it is no larger, not splittable, or `range_bytes` is None."""
    if range_bytes is None or size <= range_bytes or not is_splittable(uri):
        return [WarcRange(uri)]
    starts = range(0, size, range_bytes)
    return [WarcRange(uri, start, start + range_bytes if start + range_bytes < size else None) for start in starts]


def split_file(uri: str, range_bytes: int | None, remote: RemoteReadConfig | None = None) -> list[WarcRange]:
    """The ranges of the file `uri` (its size is looked up only when it could be split). A file whose size
    cannot be read stays whole: its reader then counts it as unreadable, with the reason."""
    if range_bytes is None or not is_splittable(uri):
        return [WarcRange(uri)]
    try:
        size = file_size(uri, remote)
    except Exception as e:  # fsspec and the remote transports raise per protocol: OSError, ValueError...
        log.warning("%s: size unknown (%s: %s); read as one range", uri, type(e).__name__, e)
        return [WarcRange(uri)]
    return ranges_of(uri, size, range_bytes)


def split_warcs(
    spark, uris: list[str], range_bytes: int | None, remote: RemoteReadConfig | None = None
) -> list[WarcRange]:
    """The ranges of every file, in file order. Local sizes are read here; remote files are sized by Spark tasks
    (one request each), so a dump of many remote files is not sized one request at a time by the driver."""
    if range_bytes is None or not any(is_remote(uri) and is_splittable(uri) for uri in uris):
        return [part for uri in uris for part in split_file(uri, range_bytes, remote)]
    slices = min(len(uris), 4 * spark.sparkContext.defaultParallelism)
    split = partial(split_file, range_bytes=range_bytes, remote=remote)
    return spark.sparkContext.parallelize(uris, numSlices=slices).flatMap(split).collect()
