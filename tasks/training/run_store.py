"""A training run folder in an object store (`s3://.../runs/r1`): the trainer works in its local staging copy.

The rule (the trainer in `model/` writes local files only):
- before the launch, the run folder is pulled from the store: its files and its complete checkpoints, so a run
  resumes from the newest checkpoint pushed by any machine;
- while torchrun runs, a thread of the launching process pushes every new complete checkpoint (a `step_*`
  folder, which the trainer's rank 0 renames into place when whole) within `PUSH_INTERVAL_S` of its save, and
  removes from the store the checkpoints the trainer pruned (`keep_checkpoints`);
- when torchrun ends (completed, failed or stopped), a last push sends the newest checkpoints and the run's
  other files (summary.json, metrics, samples, the MLflow run record).
A checkpoint in the store is complete when its `meta.json` is there: it is uploaded after the other files
(and removed first when a checkpoint is pruned), and it holds the sha256 of every other file, which the trainer
checks when it resumes. A checkpoint whose upload was cut is therefore never pulled; the next push redoes it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fineforge.model.checkpoint import CHECKPOINT_PATTERN, CHECKPOINTS_SUBDIR, META_FILE, list_checkpoints
from fineforge.tasks.common.object_store import filesystem, join_uri, store_key

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = 2.0
LOCAL_ONLY = (".fineforge.lock", ".prefect")  # files of this machine, never pushed



def remote_checkpoints(uri: str) -> list[str]:
    """The names of the complete checkpoints (with their meta.json) in the run folder at `uri`."""
    found = filesystem().glob(store_key(join_uri(uri, CHECKPOINTS_SUBDIR, "step_*", META_FILE)))
    return sorted(path.rsplit("/", 2)[-2] for path in found)


def _run_files(uri: str) -> list[str]:
    """The keys of the run folder's files outside its checkpoints."""
    fs = filesystem()
    keys = fs.find(store_key(uri))
    prefix = store_key(join_uri(uri, CHECKPOINTS_SUBDIR)) + "/"
    return [key for key in keys if not key.startswith(prefix)]


def pull_run(uri: str, run_dir: Path) -> list[str]:
    """Copy the run folder at `uri` into the local `run_dir`: its files and the complete checkpoints that are not
    there yet; return the names of the checkpoints pulled."""
    fs = filesystem()
    run_dir = Path(run_dir)
    root = store_key(uri).rstrip("/") + "/"
    for key in _run_files(uri):
        target = run_dir / key[len(root):]
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(target))
    local = {path.name for path in list_checkpoints(run_dir / CHECKPOINTS_SUBDIR)}
    pulled = [name for name in remote_checkpoints(uri) if name not in local]
    for name in pulled:
        source = join_uri(uri, CHECKPOINTS_SUBDIR, name)
        tmp = run_dir / CHECKPOINTS_SUBDIR / f".{name}.pull"
        tmp.mkdir(parents=True, exist_ok=True)
        for key in fs.find(store_key(source)):  # meta.json included: a complete checkpoint
            fs.get_file(key, str(tmp / key.rsplit("/", 1)[-1]))
        tmp.rename(run_dir / CHECKPOINTS_SUBDIR / name)
    if pulled:
        log.info("pulled checkpoints %s from %s", ", ".join(pulled), uri)
    return pulled


def push_checkpoints(run_dir: Path, uri: str) -> list[str]:
    """Push the local complete checkpoints the store lacks (meta.json last); remove the store's checkpoints the
    trainer pruned locally (meta.json first); return the names pushed."""
    fs = filesystem()
    local = {path.name: path for path in list_checkpoints(Path(run_dir) / CHECKPOINTS_SUBDIR)}
    stored = set(remote_checkpoints(uri))
    pushed = []
    for name in sorted(set(local) - stored):
        target = join_uri(uri, CHECKPOINTS_SUBDIR, name)
        files = sorted(p for p in local[name].iterdir() if p.is_file() and p.name != META_FILE)
        for path in [*files, local[name] / META_FILE]:
            fs.put_file(str(path), store_key(join_uri(target, path.name)))
        pushed.append(name)
        log.info("pushed checkpoint %s to %s", name, target)
    for name in sorted(stored - set(local)):
        if CHECKPOINT_PATTERN.match(name) and local and name < max(local):  # pruned by the trainer
            target = join_uri(uri, CHECKPOINTS_SUBDIR, name)
            fs.rm_file(store_key(join_uri(target, META_FILE)))
            fs.rm(store_key(target), recursive=True)
    return pushed


def push_run(run_dir: Path, uri: str) -> None:
    """Push the checkpoints, then every other file of the local run folder (replacing the store's copies)."""
    fs = filesystem()
    run_dir = Path(run_dir)
    push_checkpoints(run_dir, uri)
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(run_dir)
        if relative.parts[0] in (CHECKPOINTS_SUBDIR, *LOCAL_ONLY):
            continue
        fs.put_file(str(path), store_key(join_uri(uri, relative.as_posix())))
    log.info("pushed the run folder %s to %s", run_dir, uri)


class CheckpointPusher:
    """While in its `with` block, push each new checkpoint of `run_dir` to `uri`; on leaving, push the whole run."""

    def __init__(self, run_dir: Path, uri: str, interval_s: float = PUSH_INTERVAL_S) -> None:
        self.run_dir, self.uri, self.interval_s = Path(run_dir), uri, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-pusher", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                push_checkpoints(self.run_dir, self.uri)
            except Exception:  # a failed push is retried at the next tick, and at the end
                log.warning("pushing checkpoints to %s failed; retrying", self.uri, exc_info=True)

    def __enter__(self) -> CheckpointPusher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        push_run(self.run_dir, self.uri)
