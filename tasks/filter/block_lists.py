"""datatrove's URL block lists, prepared once per machine as SQLite files that every worker looks names up in.

datatrove's `URLFilter` parses its bundled lists (4.6 million blocked domains, 20,000 URLs) into Python sets in
every process: about 3 s and 450 MB per Spark worker. Prepared, a worker opens a read-only file instead and
answers `name in names` from disk (a few microseconds, an index lookup). The answers are exactly those of
datatrove's sets: the same lines are kept (those not starting with `#`, stripped) and compared as the same
strings. Preparing takes about 15 s, once, guarded by a lock so that concurrent workers do not race.
"""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import tarfile
from functools import partial
from pathlib import Path

log = logging.getLogger(__name__)

# datatrove's bundled archive of the two lists, and what its URLFilter names them.
BLOCK_LIST_ARCHIVE = "url_filterblacklistsv0_3_0.tar.gz"
LISTS = ("domains", "urls")


def cache_dir() -> Path:
    """Where prepared lists are kept: $XDG_CACHE_HOME/fineforge/url_block_lists (else ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fineforge" / "url_block_lists"


def archive_path() -> Path:
    from datatrove.utils._import_utils import ASSETS_PATH

    return Path(ASSETS_PATH) / BLOCK_LIST_ARCHIVE


def prepared_path(name: str) -> Path:
    """The prepared file of list `name`, named after the archive's size (a new datatrove list, a new file)."""
    archive = archive_path()
    return cache_dir() / f"{archive.name.removesuffix('.tar.gz')}-{archive.stat().st_size}-{name}.sqlite"


def prepare_block_lists() -> dict[str, Path]:
    """Prepare every list unless already prepared; return the files by list name."""
    from datatrove.io import safely_create_file

    cache_dir().mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in LISTS:
        path = prepared_path(name)
        safely_create_file(str(path), partial(_write, name, path))
        paths[name] = path
    return paths


def _lines(name: str) -> set[str]:
    """List `name` as datatrove's URLFilter reads it (`get_list(..., do_normalize=False)`)."""
    with tarfile.open(archive_path(), "r:gz") as archive:
        member = archive.extractfile(name)
        if member is None:
            raise FileNotFoundError(f"{name!r} is not a file in {archive_path()}")
        return {line.strip() for line in io.TextIOWrapper(member) if line[0] != "#"}


def _write(name: str, path: Path) -> None:
    """Write list `name` to `path` through a file of this process's own, renamed into place when complete."""
    log.info("preparing datatrove's URL block list %r in %s (once per machine, seconds)", name, path.parent)
    building = path.with_name(f"{path.name}.{os.getpid()}.partial")
    building.unlink(missing_ok=True)
    with sqlite3.connect(building) as db:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("CREATE TABLE names (name TEXT PRIMARY KEY) WITHOUT ROWID")
        db.executemany("INSERT INTO names VALUES (?)", ((line,) for line in sorted(_lines(name))))
    db.close()
    os.replace(building, path)


class PreparedNames:
    """`name in names`: membership in a prepared list or in `extra` names (datatrove's `extra_domains`...).

    Each process opens the file on its first lookup (a connection does not survive a fork or a pickle).
    """

    def __init__(self, path: Path, extra: set[str] | None = None):
        self.path = Path(path)
        self.extra = set(extra or ())
        self._db: sqlite3.Connection | None = None
        self._pid = -1

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.extra:
            return True
        try:
            row = self._connection().execute("SELECT 1 FROM names WHERE name = ?", (name,)).fetchone()
        except UnicodeEncodeError:  # a lone surrogate: no line of a UTF-8 file equals it
            return False
        return row is not None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self._pid = os.getpid()
        return self._db

    def __getstate__(self) -> dict:
        return {"path": self.path, "extra": self.extra, "_db": None, "_pid": -1}
