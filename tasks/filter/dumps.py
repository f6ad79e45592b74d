"""Dump specs that name CommonCrawl dumps by rule, resolved when a build runs (not when it is deployed).

- `latest`: the newest dump the source holds (on or after `since` when given);
- a pattern such as `CC-MAIN-*` or `CC-MAIN-2024-*`: every matching dump, oldest first, only those crawled on
  or after `since` when given.

A dump `CC-MAIN-YYYY-WW` is dated by the Monday of ISO week WW of YEAR, when its crawl started.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from datetime import date

LATEST = "latest"
DUMP_NAME = re.compile(r"CC-MAIN-(\d{4})-(\d{2})")
DUMP_GLOB = re.compile(r"CC-MAIN-[0-9*?\[\]-]*")
GLOB_CHARS = ("*", "?", "[")


def is_dump_spec(spec: str) -> bool:
    """True for `latest` and for dump-name patterns (`CC-MAIN-*`), which are resolved against the source."""
    spec = spec.strip()
    return spec == LATEST or (DUMP_GLOB.fullmatch(spec) is not None and any(c in spec for c in GLOB_CHARS))


def crawl_week(dump: str) -> date:
    """The date a dump's crawl started: the Monday of the ISO week its name gives."""
    match = DUMP_NAME.fullmatch(dump)
    if match is None:
        raise ValueError(f"not a CommonCrawl dump name: {dump!r}")
    year, week = map(int, match.groups())
    return date.fromisocalendar(year, week, 1)


def select_dumps(spec: str, available: Iterable[str], since: date | None = None) -> list[str]:
    """The dumps of `available` that `spec` names (see the module doc), oldest first; ValueError if none."""
    spec = spec.strip()
    dumps = sorted({d for d in available if DUMP_NAME.fullmatch(d)}, key=crawl_week)
    if since is not None:
        dumps = [d for d in dumps if crawl_week(d) >= since]
    after = f" crawled since {since.isoformat()}" if since else ""
    if spec == LATEST:
        if not dumps:
            raise ValueError(f"no dump{after} at the source")
        return dumps[-1:]
    chosen = [d for d in dumps if fnmatch.fnmatchcase(d, spec)]
    if not chosen:
        raise ValueError(f"no dump matching {spec}{after} at the source")
    return chosen
