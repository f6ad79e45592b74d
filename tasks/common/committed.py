"""Committed outputs in an object store: publish a finished local folder, pull the committed one, without renames.

An object store has no rename, so a stage's output at `<uri>` (e.g. `s3://b/p/CC-MAIN-2024-22/filtered`) is
published in two steps:
1. its files are uploaded under a new attempt prefix, `<uri>/attempt-<id>/...`;
2. ONE small object, `<uri>/_COMMITTED.json`, is written: the attempt id, the fingerprint, every file with its
   size and mtime, and the statistics. An object PUT is atomic, so readers see the old commit or the new one.
Readers trust only `_COMMITTED.json`: they download the files of its attempt and nothing else, so an attempt
that was killed before its commit is never seen. Attempts other than the committed one are stale: a publish
removes them after its commit, and before its upload (leftovers of killed runs).

A pulled copy holds `.committed.json` (the attempt it mirrors), so pulling an unchanged commit again downloads
nothing; files get back their recorded mtimes, so the identity of a pulled file (path, size, mtime) is the
same at every pull.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from fineforge.tasks.common.object_store import filesystem, join_uri, store_key

log = logging.getLogger(__name__)

COMMIT_FILE = "_COMMITTED.json"
ATTEMPT_PREFIX = "attempt-"
PULLED_FILE = ".committed.json"  # in a local copy: the commit it mirrors



def read_commit(uri: str) -> dict[str, Any] | None:
    """The commit of the output at `uri` (the content of its `_COMMITTED.json`), or None when none is committed."""
    try:
        return json.loads(filesystem().cat_file(store_key(join_uri(uri, COMMIT_FILE))))
    except FileNotFoundError:
        return None


def attempts(uri: str) -> list[str]:
    """The attempt ids stored under `uri`, committed or not."""
    fs = filesystem()
    try:
        entries = fs.ls(store_key(uri), detail=False)
    except FileNotFoundError:
        return []
    names = (entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)
    return sorted(name[len(ATTEMPT_PREFIX):] for name in names if name.startswith(ATTEMPT_PREFIX))


def remove_stale_attempts(uri: str, keep: str | None) -> list[str]:
    """Remove every attempt under `uri` but `keep` (the committed one); return the removed ids."""
    fs = filesystem()
    stale = [attempt for attempt in attempts(uri) if attempt != keep]
    for attempt in stale:
        log.info("removing a stale attempt: %s", join_uri(uri, ATTEMPT_PREFIX + attempt))
        fs.rm(store_key(join_uri(uri, ATTEMPT_PREFIX + attempt)), recursive=True)
    return stale


def local_files(folder: Path) -> list[dict[str, Any]]:
    """The files of a local output folder (relative path, size, mtime), the pulled-copy record left out."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != PULLED_FILE):
        st = path.stat()
        found.append({"path": path.relative_to(folder).as_posix(), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return found


def publish(folder: Path, uri: str, fingerprint: str, statistics: dict[str, Any]) -> dict[str, Any]:
    """Upload the complete local output `folder` as a new attempt at `uri` and commit it; return the commit."""
    fs = filesystem()
    previous = read_commit(uri)
    remove_stale_attempts(uri, previous["attempt"] if previous else None)
    attempt = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
    files = local_files(folder)
    for entry in files:
        fs.put_file(str(folder / entry["path"]), store_key(join_uri(uri, ATTEMPT_PREFIX + attempt, entry["path"])))
    commit = {"attempt": attempt, "fingerprint": fingerprint, "files": files, "committed_at": time.time(),
              "statistics": json.loads(json.dumps(statistics, default=str))}
    fs.pipe_file(store_key(join_uri(uri, COMMIT_FILE)), json.dumps(commit, indent=2, sort_keys=True).encode())
    remove_stale_attempts(uri, attempt)
    (folder / PULLED_FILE).write_text(json.dumps({"uri": uri, "attempt": attempt}))
    log.info("published %d files to %s (attempt %s)", len(files), uri, attempt)
    return commit


def _mirrors(folder: Path, commit: dict[str, Any]) -> bool:
    """Whether the local `folder` already holds the files of `commit`."""
    record = folder / PULLED_FILE
    if not record.is_file() or json.loads(record.read_text()).get("attempt") != commit["attempt"]:
        return False
    return all((folder / e["path"]).is_file() and (folder / e["path"]).stat().st_size == e["size"]
               for e in commit["files"])


def pull(uri: str, folder: Path) -> dict[str, Any] | None:
    """Make the local `folder` a copy of the output committed at `uri`; return the commit (None: none committed,
    and a local copy of an earlier commit is removed)."""
    folder = Path(folder)
    commit = read_commit(uri)
    if commit is None:
        if (folder / PULLED_FILE).is_file():
            shutil.rmtree(folder)
        return None
    if _mirrors(folder, commit):
        return commit
    fs = filesystem()
    tmp = folder.parent / f".{folder.name}.pull-{uuid.uuid4().hex[:8]}"
    try:
        for entry in commit["files"]:
            target = tmp / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(store_key(join_uri(uri, ATTEMPT_PREFIX + commit["attempt"], entry["path"])), str(target))
            os.utime(target, ns=(entry["mtime_ns"], entry["mtime_ns"]))
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / PULLED_FILE).write_text(json.dumps({"uri": uri, "attempt": commit["attempt"]}))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("pulled %d files of %s (attempt %s) into %s", len(commit["files"]), uri, commit["attempt"], folder)
    return commit


def committed_children(uri: str, pattern: str) -> list[str]:
    """The URIs under `uri` matching the glob `pattern` (e.g. `*/scrubbed`) that hold a committed output."""
    scheme = uri.split("://", 1)[0] + "://"
    found = filesystem().glob(store_key(join_uri(uri, pattern, COMMIT_FILE)))
    return sorted(scheme + path.rsplit("/", 1)[0] for path in found)
