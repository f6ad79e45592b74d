"""The data build's input: the WARC files of the input spec, grouped by the CommonCrawl dump they belong to."""

from __future__ import annotations

import logging
from datetime import date

from prefect import task
from prefect.cache_policies import NO_CACHE

from fineforge.tasks.filter.warc_input import dump_of, resolve_warc_inputs

log = logging.getLogger(__name__)

ALL_DUMPS = "all-dumps"  # the output group of a deduplication across dumps


def group_by_dump(uris: list[str], default_dump: str) -> dict[str, list[str]]:
    """WARC URIs grouped by the CommonCrawl dump their path names (else the default dump)."""
    groups: dict[str, list[str]] = {}
    for uri in uris:
        groups.setdefault(dump_of(uri, default_dump), []).append(uri)
    return groups


@task(name="resolve-warc-inputs", cache_policy=NO_CACHE)
def resolve_inputs(
    spec: str, limit: int | None, sample: int | None, seed: int, source: str, default_dump: str,
    since: date | None = None,
) -> dict[str, list[str]]:
    """Resolve the input spec to WARC URIs, grouped by dump, when the build runs (`latest` is the newest dump now)."""
    uris = resolve_warc_inputs(spec, limit=limit, sample=sample, seed=seed, source=source, since=since)
    groups = group_by_dump(uris, default_dump)
    for dump, group in groups.items():
        log.info("dump %s: %d WARC files", dump, len(group))
    return groups
