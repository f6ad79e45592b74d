"""Which WARC files a data build reads: a folder, a glob, a list file or a CommonCrawl dump name.

Remote files (``https://``, ``s3://`` with anonymous access) are opened through fsspec, streamed in
blocks: no file is ever read whole into memory.
"""

from __future__ import annotations

import json
import logging
import random
import re
from datetime import date
from pathlib import Path
from typing import IO

import fsspec

from fineforge.tasks.filter.dumps import is_dump_spec, select_dumps

log = logging.getLogger(__name__)

COMMONCRAWL_HTTPS = "https://data.commoncrawl.org"
# The list of CommonCrawl's dumps, for an http(s) source (a folder or bucket is listed instead).
COLLINFO_URL = "https://index.commoncrawl.org/collinfo.json"
DUMP_PATTERN = re.compile(r"CC-MAIN-\d{4}-\d{2}")
ARCHIVE_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
GLOB_CHARS = ("*", "?", "[")
# Extra fsspec options per protocol: CommonCrawl's bucket is public, read without credentials.
STORAGE_OPTIONS: dict[str, dict] = {"s3": {"anon": True}}


class InputError(ValueError):
    """The input spec names nothing readable (missing path, empty folder, unknown dump...)."""


def is_archive_name(name: str) -> bool:
    """True for WARC/ARC file names (plain or gzip); WET and WAT derivatives are not archives of pages."""
    lower = name.lower()
    return lower.endswith(ARCHIVE_SUFFIXES) and ".wet" not in lower and ".wat" not in lower


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _storage_options(uri: str) -> dict:
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    return STORAGE_OPTIONS.get(protocol, {})


def open_uri(uri: str, compression: str | None = None) -> IO[bytes]:
    """A binary, seekable file object on a local path or URL, read in blocks through fsspec."""
    return fsspec.open(uri, "rb", compression=compression, **_storage_options(uri)).open()


def dump_of(uri: str, default: str) -> str:
    """The CommonCrawl dump (``CC-MAIN-YYYY-WW``) named in a URI, else ``default``."""
    match = DUMP_PATTERN.search(uri)
    return match.group(0) if match else default


def _dump_paths(dump: str, source: str) -> list[str]:
    source = source.rstrip("/")
    if not _is_remote(source):
        source = str(Path(source).resolve())
    manifest = f"{source}/crawl-data/{dump}/warc.paths.gz"
    try:
        with open_uri(manifest, compression="gzip") as f:
            lines = f.read().decode("utf-8").splitlines()
    except FileNotFoundError as e:
        raise InputError(f"unknown dump {dump}: no WARC list at {manifest}") from e
    except OSError as e:
        raise InputError(f"cannot read the WARC list of dump {dump} at {manifest}: {e}") from e
    return [f"{source}/{line.strip().lstrip('/')}" for line in lines if line.strip()]


def list_dumps(source: str) -> list[str]:
    """The dump names a source holds: CommonCrawl's list of crawls for an http(s) source, else the dumps with a
    `crawl-data/<dump>/warc.paths.gz` in the folder or bucket."""
    source = source.rstrip("/")
    try:
        if source.startswith(("http://", "https://")):
            with open_uri(COLLINFO_URL) as f:
                return [entry["id"] for entry in json.load(f)]
        if not _is_remote(source):
            source = str(Path(source).resolve())
        manifests = f"{source}/crawl-data/CC-MAIN-*/warc.paths.gz"
        _, _, found = fsspec.get_fs_token_paths(manifests, storage_options=_storage_options(source))
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot list the dumps of {source}: {e}") from e
    return [Path(path).parent.name for path in found]


def _matching_dump_paths(spec: str, source: str, since: date | None) -> list[str]:
    """The WARC files of every dump a dump spec (`latest`, `CC-MAIN-*`) names at the source, now."""
    available = list_dumps(source)
    try:
        dumps = select_dumps(spec, available, since)
    except ValueError as e:
        raise InputError(f"{e} {source}") from e
    log.info("dump spec %s%s resolved at %s: %s", spec, f" since {since}" if since else "", source, ", ".join(dumps))
    return [path for dump in dumps for path in _dump_paths(dump, source)]


def _listed_paths(list_file: Path) -> list[str]:
    compression = "gzip" if list_file.name.endswith(".gz") else None
    with open_uri(str(list_file), compression=compression) as f:
        lines = f.read().decode("utf-8").splitlines()
    paths = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if _is_remote(entry) or Path(entry).is_absolute():
            paths.append(entry)
        else:
            paths.append(str((list_file.parent / entry).resolve()))
    return paths


def _globbed_paths(pattern: str) -> list[str]:
    fs, _, found = fsspec.get_fs_token_paths(pattern, storage_options=_storage_options(pattern))
    paths = [p for p in found if is_archive_name(p)]
    if _is_remote(pattern):
        protocol = pattern.split("://", 1)[0]
        return sorted(p if "://" in p else f"{protocol}://{p}" for p in paths)
    return sorted(str(Path(p).resolve()) for p in paths)


def needs_network(spec: str, source: str = COMMONCRAWL_HTTPS) -> bool:
    """Whether resolving `spec` reads a remote location: a URL or remote glob, or a dump name at a remote source."""
    spec = spec.strip()
    names_dumps = DUMP_PATTERN.fullmatch(spec) is not None or is_dump_spec(spec)
    return _is_remote(spec) or (names_dumps and _is_remote(source))


def _paths_of(spec: str, source: str, since: date | None) -> list[str]:
    if since is not None and not is_dump_spec(spec):
        raise InputError(f"since applies to a dump spec (latest, CC-MAIN-*), not to {spec}")
    if is_dump_spec(spec):
        return _matching_dump_paths(spec, source, since)
    if DUMP_PATTERN.fullmatch(spec):
        return _dump_paths(spec, source)
    if any(c in spec for c in GLOB_CHARS):
        paths = _globbed_paths(spec)
        if not paths:
            raise InputError(f"no WARC files match {spec}")
        return paths
    if _is_remote(spec):
        return [spec]
    path = Path(spec)
    if path.is_dir():
        paths = sorted(str(p.resolve()) for p in path.iterdir() if p.is_file() and is_archive_name(p.name))
        if not paths:
            raise InputError(f"no WARC files (*.warc, *.warc.gz, *.arc, *.arc.gz) in folder {spec}")
        return paths
    if path.is_file():
        return [str(path.resolve())] if is_archive_name(path.name) else _listed_paths(path)
    raise InputError(f"input not found: {spec} (not a folder, file, glob or CommonCrawl dump name)")


def resolve_warc_inputs(
    spec: str,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    source: str = COMMONCRAWL_HTTPS,
    since: date | None = None,
) -> list[str]:
    """The WARC files named by ``spec``: a folder, a glob, a list file (optionally .gz), one WARC file,
    a dump name such as ``CC-MAIN-2024-22`` (its ``warc.paths.gz`` under ``source``), or a dump spec
    (``latest``, ``CC-MAIN-*``; only dumps crawled since ``since`` when given) resolved against ``source`` now.

    ``limit`` keeps the first N files, ``sample`` a random sample of N drawn with ``seed`` (kept in input
    order). Raises InputError, before any work, when nothing readable is named.
    """
    if limit is not None and sample is not None:
        raise InputError("give either limit or sample, not both")
    for name, value in (("limit", limit), ("sample", sample)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be a positive number of files, got {value}")
    paths = _paths_of(spec.strip(), source, since)
    if not paths:
        raise InputError(f"input {spec} lists no WARC files")
    if limit is not None:
        paths = paths[:limit]
    if sample is not None and sample < len(paths):
        chosen = set(random.Random(seed).sample(range(len(paths)), sample))
        paths = [p for i, p in enumerate(paths) if i in chosen]
    log.info("input %s: %d WARC files", spec, len(paths))
    return paths
