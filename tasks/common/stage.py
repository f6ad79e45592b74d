"""The stage contract: what a data stage is, where its output lives, and how that output is written.

A stage (filter, dedup, scrub, sample, tokens, ...) is an object with
- `name`: its output folder, e.g. `filtered`;
- `group`: the folder above it, e.g. a dump `CC-MAIN-2024-22`, `all-dumps` or `tokens`;
- `fingerprint_parts()`: what decides its output (its config, the identity of its inputs);
- `run(spark, output_dir)`: the work, writing into `output_dir` and returning statistics.

`execute_stage` runs it as `<workdir>/<group>/<name>/`: skipped when that folder already holds a complete
output with the same fingerprint; otherwise written into a temporary sibling `.<name>.tmp-<id>` that is
renamed into place, with `stats.json`, when complete. Temporary folders left by a killed run are removed by
the next run of the same stage. The result is a `StageOutput` (path, fingerprint, statistics): what flows
hand from one stage to the next.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from fineforge.tasks.common.documents import parquet_files
from fineforge.tasks.common.object_store import staged_uri

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"
# Marks of the sibling folders of `<name>`: being written, and replaced (removed after the rename).
TMP_MARK, OLD_MARK = "tmp", "old"


class Stage(Protocol):
    """A data stage: see the module's docstring."""

    name: str
    group: str

    def fingerprint_parts(self) -> list[Any]:
        """JSON-able parts that decide the output: the config, and the identity of the inputs."""
        ...

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        """Write the output into `output_dir`; return the statistics (documents_in, documents_out, dropped...)."""
        ...


@dataclass(frozen=True)
class StageOutput:
    """A stage's complete output: its folder, its fingerprint and its statistics (the content of stats.json)."""

    path: Path
    fingerprint: str
    statistics: dict[str, Any]
    skipped: bool = False  # True when this run found it complete and did not redo it

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def group(self) -> str:
        return self.path.parent.name


@dataclass(frozen=True)
class ConfiguredStage:
    """The common shape of a stage whose output is decided by its config and its inputs (upstream outputs, or
    files): subclasses set `name`, narrow the types of `config` and `inputs`, and write `run`.

    Its output is made of its input files' parts, so it can grow by increments (`tasks/common/increments.py`):
    `input_files()` lists the files it processes (WARC files, or the part files of the upstream outputs), and a
    copy with `only` set writes the output of those input files alone (one part per file when
    `one_part_per_input`).
    """

    config: Any  # a pydantic model
    inputs: list[Any]
    group: str
    only: tuple[str, ...] | None = None  # write the output of these input files only (an increment)
    name: ClassVar[str]
    one_part_per_input: ClassVar[bool] = True
    # Config fields that change how the work is run, never its output (left out of the fingerprint).
    execution_fields: ClassVar[frozenset[str]] = frozenset()

    def fingerprint_parts(self) -> list[Any]:
        return [input_identity(self.inputs), *self.settings_parts()]

    def settings_parts(self) -> list[Any]:
        """What decides the output besides the input files: the config (less its `execution_fields`)."""
        return [self.config.model_dump(mode="json", exclude=set(self.execution_fields))]

    def input_files(self) -> list[str]:
        """The files this stage processes: its input files, or the part files of its upstream outputs."""
        return [str(path) for item in self.inputs
                for path in (parquet_files([item.path]) if isinstance(item, StageOutput) else [item])]

    def files_to_write(self) -> list[str]:
        """The input files whose output this run writes: `only`, else all."""
        return list(self.only) if self.only is not None else self.input_files()


def stage_path(workdir: str | Path, group: str, name: str) -> Path:
    """Where a stage's output lives: `<workdir>/<group>/<name>`."""
    return Path(workdir) / group / name


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (configs, input listings, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_identity(paths: Iterable[str | Path]) -> list[list]:
    """What identifies input files for the skip check: path, size and mtime of local files, else the URI. A file of
    a remote work dir's staging copy is named by its URI (its mtime is the committed one), so the identity is the
    same on every machine."""
    identity = []
    for path in map(str, paths):
        if os.path.exists(path):
            st = os.stat(path)
            identity.append([staged_uri(path) or os.path.abspath(path), st.st_size, st.st_mtime_ns])
        else:
            identity.append([path])
    return identity


def input_identity(inputs: Iterable[StageOutput | str | Path]) -> list:
    """The identity of a stage's inputs: an upstream stage's fingerprint, or a file's `file_identity`."""
    return [item.fingerprint if isinstance(item, StageOutput) else file_identity([item])[0] for item in inputs]


def completed_output(path: str | Path) -> StageOutput | None:
    """The complete output in the stage folder `path` (its stats.json), else None."""
    stats_path = Path(path) / STATS_FILE
    if not stats_path.is_file():
        return None
    statistics = json.loads(stats_path.read_text())
    return StageOutput(Path(path), statistics.get("fingerprint", ""), statistics)


def load_output(workdir: str | Path, group: str, name: str) -> StageOutput:
    """The complete output of an earlier run, as the input of a stage run on its own; FileNotFoundError if none."""
    path = stage_path(workdir, group, name)
    output = completed_output(path)
    if output is None:
        raise FileNotFoundError(f"no complete stage output at {path} (no {STATS_FILE})")
    return output


def sibling(path: Path, mark: str) -> Path:
    """A new, hidden folder name beside `path`: `.<name>.<mark>-<id>`."""
    return path.parent / f".{path.name}.{mark}-{uuid.uuid4().hex[:8]}"


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporary folders that killed runs of the stage at `path` left beside it; return them."""
    leftovers = [p for mark in (TMP_MARK, OLD_MARK) for p in path.parent.glob(f".{path.name}.{mark}-*")]
    for leftover in leftovers:
        log.info("removing the leftover of an interrupted run: %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    return leftovers


def _commit(tmp: Path, path: Path, statistics: dict[str, Any]) -> None:
    """Write stats.json into `tmp` and rename it to `path`, replacing an older output."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / STATS_FILE).write_text(json.dumps(statistics, indent=2, sort_keys=True))
    old = None
    if path.exists():
        old = sibling(path, OLD_MARK)
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_complete(stage: Stage, workdir: str | Path) -> bool:
    """Whether the stage's folder holds a complete output for its current fingerprint (`execute_stage` skips it)."""
    done = completed_output(stage_path(workdir, stage.group, stage.name))
    return done is not None and done.fingerprint == fingerprint(*stage.fingerprint_parts())


def execute_stage(stage: Stage, workdir: str | Path, spark=None) -> StageOutput:
    """Run `stage` as `<workdir>/<group>/<name>/`, atomically; skipped when complete for the same fingerprint.

    The statistics in stats.json are the stage's own plus stage, dump (the group), fingerprint and seconds.
    """
    path = stage_path(workdir, stage.group, stage.name)
    remove_leftovers(path)
    stage_fingerprint = fingerprint(*stage.fingerprint_parts())
    done = completed_output(path)
    if done is not None and done.fingerprint == stage_fingerprint:
        log.info("stage %s already complete for these inputs and config: %s", stage.name, path)
        return replace(done, skipped=True)
    tmp = sibling(path, TMP_MARK)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        statistics = stage.run(spark, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):  # a group folder this failed run made, left empty, goes too
            tmp.parent.rmdir()
        raise
    statistics = {"stage": stage.name, "dump": stage.group, "fingerprint": stage_fingerprint,
                  "seconds": round(time.time() - started, 3), **statistics}
    _commit(tmp, path, statistics)
    log.info("stage %s complete: %s", stage.name, path)
    return StageOutput(path, stage_fingerprint, statistics)
