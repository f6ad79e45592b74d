"""Stages that grow by increments: a rebuild processes only the input files not processed yet and appends their
parts to the earlier output, which stays untouched.

Each folder of such a stage holds `registry.json`, the registry of the input files its parts came from:

    {"settings": "<fingerprint of the config>", "fingerprint": "<the stage fingerprint, as in stats.json>",
     "inputs": [{"input": URI, "identity": [path, size, mtime], "parts": ["part-00002.parquet"], "increment": 1}]}

For the filter stage the inputs are WARC files: it is the registry of the processed WARC files of a dump. For
later stages they are the part files of the upstream output (per-file stages map each to its own part; the dedup
stage's parts are shared by its increment's inputs).

`execute_incremental(stage, workdir, spark)` runs a `ConfiguredStage` (see its doc for `input_files` and `only`):
- complete for the same fingerprint: skipped, as by `execute_stage`;
- appendable: the same settings, every registered input file still an input with the same identity, and the
  folder's parts exactly the registered ones. The new files alone are run (a copy of the stage with `only`)
  into a temporary folder; their parts are moved in under the next free numbers; then registry.json and
  stats.json are replaced (with no new file, only the fingerprint changes: the output is already that of a
  whole run). The statistics are the earlier ones plus the increment's (counts
  add up; summaries such as percentiles are the increment's), with `inputs_already_processed` and
  `inputs_processed` of this run, and `increments`;
- otherwise the whole stage runs through `execute_stage`, and the registry is written for it.

An append killed part-way leaves parts the registry does not list, or a registry whose fingerprint is not that
of stats.json: the next run rebuilds the stage whole, so nothing is lost or counted twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fineforge.tasks.common.documents import parquet_files, part_file_name
from fineforge.tasks.common.stage import (
    STATS_FILE,
    TMP_MARK,
    ConfiguredStage,
    StageOutput,
    completed_output,
    execute_stage,
    file_identity,
    fingerprint,
    remove_leftovers,
    sibling,
    stage_path,
)
from fineforge.tasks.common.statistics import STEPS, merge_statistics

log = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
ALREADY_PROCESSED, PROCESSED, INCREMENTS = "inputs_already_processed", "inputs_processed", "increments"
# Statistics of one run, not summed over increments.
RUN_KEYS = ("stage", "dump", "fingerprint", "seconds", ALREADY_PROCESSED, PROCESSED, INCREMENTS)


@dataclass(frozen=True)
class InputRegistry:
    """Which input files (with their identity) went into which parts of a stage folder."""

    settings: str
    fingerprint: str
    inputs: list[dict[str, Any]]

    def identities(self) -> dict[str, list]:
        return {entry["input"]: entry["identity"] for entry in self.inputs}

    def parts(self) -> set[str]:
        return {part for entry in self.inputs for part in entry["parts"]}

    def increments(self) -> int:
        return 1 + max((entry["increment"] for entry in self.inputs), default=-1)


def registry_entries(files: list[str], parts: list[str], one_part_per_input: bool, increment: int) -> list[dict]:
    """Entries for `files` whose output is `parts`: file i -> part i for a per-file stage, else all the parts."""
    paired = one_part_per_input and len(parts) == len(files)
    identities = file_identity(files)
    return [{"input": file, "identity": identities[i], "parts": [parts[i]] if paired else list(parts),
             "increment": increment} for i, file in enumerate(files)]


def read_registry(folder: Path) -> InputRegistry | None:
    """The registry of a stage folder; None when it has none (or an unreadable one)."""
    try:
        return InputRegistry(**json.loads((Path(folder) / REGISTRY_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_json(path: Path, content: dict) -> None:
    """Replace `path` by `content` at once (written beside it, then renamed)."""
    tmp = path.with_name(f".{path.name}.{TMP_MARK}")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True))
    os.replace(tmp, path)


def new_input_files(stage: ConfiguredStage, done: StageOutput) -> list[str] | None:
    """The input files to append to the complete output `done` (maybe none: the same files under a new upstream
    fingerprint); None when the stage must be rebuilt whole."""
    registry = read_registry(done.path)
    if registry is None or registry.fingerprint != done.fingerprint:
        return None
    if registry.settings != fingerprint(*stage.settings_parts()):
        return None
    files = stage.input_files()
    current = dict(zip(files, file_identity(files), strict=True))
    if any(current.get(file) != identity for file, identity in registry.identities().items()):
        return None  # an input was removed or changed: its documents cannot be taken out of the parts
    if {path.name for path in parquet_files([done.path])} != registry.parts():
        return None  # parts of an interrupted append, or parts removed by hand
    known = registry.identities()
    return [file for file in files if file not in known]


def _move_parts(source: Path, folder: Path) -> list[str]:
    """Move the parts of `source` into `folder` under the next free part numbers, in order; return their names."""
    numbers = [int(path.stem.rsplit("-", 1)[1]) for path in parquet_files([folder])]
    first = 1 + max(numbers, default=-1)
    names = []
    for offset, part in enumerate(parquet_files([source])):
        names.append(part_file_name(first + offset))
        part.rename(folder / names[-1])
    return names


def _additive(key: str, value: Any) -> bool:
    if key == STEPS:
        return isinstance(value, list)
    if isinstance(value, Mapping):
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values())
    return isinstance(value, int | float) and not isinstance(value, bool)


def appended_statistics(earlier: Mapping[str, Any], increment: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics of an output and an increment appended to it: counts add up, other values are the
    increment's (its percentiles, say), the run's own keys (RUN_KEYS) are left out."""
    earlier = {k: v for k, v in earlier.items() if k not in RUN_KEYS}
    increment = json.loads(json.dumps(increment))  # the same key types as the earlier statistics, read from JSON
    additive = [{k: v for k, v in stats.items() if _additive(k, v)} for stats in (earlier, increment)]
    return {**earlier, **increment, **merge_statistics(additive)}


def _run_increment(stage: ConfiguredStage, folder: Path, files: list[str], spark) -> tuple[dict[str, Any], list[str]]:
    """Run `stage` on `files` only, into a temporary folder beside `folder`; move the parts in. (statistics, parts)"""
    tmp = sibling(folder, TMP_MARK)
    try:
        statistics = replace(stage, only=tuple(files)).run(spark, tmp)
        return statistics, _move_parts(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def append_increment(stage: ConfiguredStage, done: StageOutput, files: list[str], stage_fingerprint: str,
                     spark=None) -> StageOutput:  # fmt: skip
    """Run `stage` on the new input `files` only and append their parts to `done` (see the module doc). With no
    new files (the same input files under a new upstream fingerprint) the output is only stamped as current."""
    registry = read_registry(done.path)
    log.info("stage %s: %d new input files, %d already processed", done.path, len(files), len(registry.inputs))
    started = time.time()
    increment, parts = _run_increment(stage, done.path, files, spark) if files else ({}, [])
    entries = registry.inputs + registry_entries(files, parts, stage.one_part_per_input, registry.increments())
    updated = InputRegistry(registry.settings, stage_fingerprint, entries)
    statistics = {"stage": stage.name, "dump": stage.group, "fingerprint": stage_fingerprint,
                  "seconds": round(done.statistics.get("seconds", 0) + time.time() - started, 3),
                  **appended_statistics(done.statistics, increment), ALREADY_PROCESSED: len(registry.inputs),
                  PROCESSED: len(files), INCREMENTS: updated.increments()}  # fmt: skip
    _write_json(done.path / REGISTRY_FILE, asdict(updated))
    _write_json(done.path / STATS_FILE, statistics)
    return StageOutput(done.path, stage_fingerprint, statistics, skipped=not files)


def execute_incremental(stage: ConfiguredStage, workdir: str | Path, spark=None) -> StageOutput:
    """Run `stage` as `<workdir>/<group>/<name>/`: skipped when complete, appended to when only new input files
    came, else run whole (see the module doc)."""
    path = stage_path(workdir, stage.group, stage.name)
    remove_leftovers(path)
    stage_fingerprint = fingerprint(*stage.fingerprint_parts())
    done = completed_output(path)
    if done is not None and done.fingerprint != stage_fingerprint:
        files = new_input_files(stage, done)
        if files is not None:
            return append_increment(stage, done, files, stage_fingerprint, spark)
    output = execute_stage(stage, workdir, spark)
    registry = read_registry(output.path)
    if registry is None or registry.fingerprint != output.fingerprint:
        parts = [part.name for part in parquet_files([output.path])]
        entries = registry_entries(stage.input_files(), parts, stage.one_part_per_input, 0)
        registry = InputRegistry(fingerprint(*stage.settings_parts()), output.fingerprint, entries)
        _write_json(output.path / REGISTRY_FILE, asdict(registry))
    return output
