"""The on-disk contract of a data stage: `<workdir>/<dump>/<stage>/` written atomically with `stats.json`.

A stage writes into a temporary sibling folder, then renames it into place. A stage whose complete
output exists with the same fingerprint (inputs + config) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"
# The data build's stages, in order; the last one is the corpus that tokenization reads.
FILTERED, DEDUPLICATED, SCRUBBED = "filtered", "deduplicated", "scrubbed"


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (configs, input listings, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_identity(paths: Iterable[str | Path]) -> list[list]:
    """What identifies input files for the skip check: path, size and mtime of local files, else the URI."""
    identity = []
    for path in map(str, paths):
        if os.path.exists(path):
            st = os.stat(path)
            identity.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
        else:
            identity.append([path])
    return identity


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum several {name: count} mappings."""
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


@dataclass
class Stage:
    """One stage's output folder under `<workdir>/<dump>/<name>`."""

    workdir: Path
    dump: str
    name: str
    fingerprint: str
    started: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        return Path(self.workdir) / self.dump / self.name

    def completed_stats(self) -> dict | None:
        """The stats of a complete earlier run with the same fingerprint, else None."""
        stats_path = self.path / STATS_FILE
        if not stats_path.is_file():
            return None
        stats = json.loads(stats_path.read_text())
        return stats if stats.get("fingerprint") == self.fingerprint else None

    def begin(self) -> Path:
        """A fresh temporary folder path (not yet created) to write the stage's output into."""
        self.started = time.time()
        tmp = self.path.parent / f".{self.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = tmp
        return tmp

    def commit(self, stats: dict) -> dict:
        """Write stats.json into the temporary folder and rename it into place; return the stats."""
        tmp: Path = self._tmp
        tmp.mkdir(parents=True, exist_ok=True)
        stats = {
            "stage": self.name,
            "dump": self.dump,
            "fingerprint": self.fingerprint,
            "seconds": round(time.time() - self.started, 3),
            **stats,
        }
        (tmp / STATS_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True))
        if self.path.exists():
            old = self.path.parent / f".{self.name}.old-{uuid.uuid4().hex[:8]}"
            self.path.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(self.path)
        log.info("stage %s complete: %s", self.name, self.path)
        return stats

    def abort(self) -> None:
        """Remove the temporary folder of a failed run."""
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def stats_rows(stats: dict) -> list[dict]:
    """Flatten a stage's stats into table rows (dump, stage, step, metric, value) for artifacts and MLflow."""
    where = {"dump": stats.get("dump", ""), "stage": stats.get("stage", "")}
    rows = [
        {**where, "step": "", "metric": key, "value": value}
        for key, value in sorted(stats.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    for step in stats.get("steps", []):
        rows += [{**where, "step": step["name"], "metric": k, "value": v} for k, v in step.items() if k != "name"]
    for reason, value in sorted(stats.get("dropped", {}).items()):
        rows.append({**where, "step": "", "metric": f"dropped/{reason}", "value": value})
    return rows


def run_stage(workdir: Path, dump: str, name: str, fingerprint_parts: list, work) -> dict:
    """Run `work(output_dir) -> stats` as the stage `<workdir>/<dump>/<name>`, atomically.

    Skipped (returning the earlier stats with "skipped": True) when a complete output with the same
    fingerprint exists. Stats should hold documents_in, documents_out, dropped {reason: n} and, per
    step, a list "steps" of {"name", ...counts}.
    """
    stage = Stage(Path(workdir), dump, name, fingerprint(*fingerprint_parts))
    done = stage.completed_stats()
    if done is not None:
        log.info("stage %s already complete for these inputs and config: %s", name, stage.path)
        return {**done, "skipped": True}
    output_dir = stage.begin()
    try:
        stats = work(output_dir)
    except BaseException:
        stage.abort()
        raise
    return stage.commit(stats)
