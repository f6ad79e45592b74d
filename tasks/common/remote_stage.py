"""A stage in a remote work dir: pulled before it runs, published after (`committed.py`), run on the staging copy.

The stage itself, its skip check and its increments work on the local staging copy of the work dir as they do on
a local work dir; the committed output in the store is the truth the staging copy is made from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fineforge.tasks.common.committed import publish, pull
from fineforge.tasks.common.object_store import work_dir
from fineforge.tasks.common.stage import Stage, StageOutput, stage_path


def _is_committed(commit: dict[str, Any] | None, output: StageOutput) -> bool:
    """Whether `commit` is this output (same fingerprint and statistics): nothing to publish."""
    statistics = json.loads(json.dumps(output.statistics, default=str))
    return commit is not None and commit["fingerprint"] == output.fingerprint and commit["statistics"] == statistics


def run_in_work_dir(run: Callable[[Path], StageOutput], stage: Stage, workdir: str | Path) -> StageOutput:
    """`run(local work dir)` for `stage`; in a remote work dir, its committed output is pulled into the staging copy
    first, and what the run leaves there is published unless it is the committed output already."""
    where = work_dir(workdir)
    if not where.remote:
        return run(where.local)
    uri = where.uri_of(stage.group, stage.name)
    commit = pull(uri, stage_path(where.local, stage.group, stage.name))
    output = run(where.local)
    if not _is_committed(commit, output):
        publish(output.path, uri, output.fingerprint, output.statistics)
    return output
