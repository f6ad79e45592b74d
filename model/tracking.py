"""Tracking of training runs, the one tracking module of `model/`: a JSONL log in the run folder, and MLflow.

MLflow is used on rank 0 only, when MLFLOW_TRACKING_URI is set and the package imports. A training run
(one run folder) is one MLflow run, whose id is kept in `run_dir/mlflow_run.json`:
- a start that resumes from a checkpoint continues that MLflow run (the metric `resumed_from_step` marks
  each restart), whatever state the previous process left it in;
- a fresh start (no checkpoint, or `resume` off) creates a new MLflow run; a recorded one that a killed
  process left RUNNING is marked KILLED first, so no run stays RUNNING forever.
The trainer closes the run FINISHED or FAILED; a caller that gives up on a killed job settles it with
`settle_run`. Logged: the config as params and as `config.json`, per-step metrics, samples, the final
checkpoint, the data sets a stage reads (`input_dataset`: MLflow run inputs), `metrics.jsonl` when the run
closes, and MLflow's system metrics (CPU, memory, disk, network; GPUs when pynvml is installed) when psutil is.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
METRICS_FILE = "metrics.jsonl"
RUN_RECORD = "mlflow_run.json"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_DIGEST_CHARS = 36  # MLflow's limit on a data set digest


def tracking_uri() -> str | None:
    """The configured MLflow store, or None (then only metrics.jsonl is written)."""
    return os.environ.get(TRACKING_URI_ENV) or None


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store's file (MLflow's default is ./mlruns
    of whatever the working directory is); None for a server, which has its own root."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def experiment_id(client, name: str, uri: str) -> str:
    """The id of the experiment `name` of the store at `uri`, created when new (artifacts: `artifact_root`)."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name, artifact_root(uri))


def recorded_run(run_dir: str | Path) -> dict | None:
    """The MLflow run recorded in a run folder: {"run_id", "tracking_uri", "experiment"}, or None."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("%s unreadable (%s); a new MLflow run will be created", path, exc)
        return None
    return record if isinstance(record, dict) and isinstance(record.get("run_id"), str) else None


def settle_run(run_dir: str | Path, status: str = "FAILED", uri: str | None = None) -> str | None:
    """Mark the run recorded in `run_dir` `status` if it is still RUNNING (its process was killed); return its
    id. `uri`: the MLflow store, default $MLFLOW_TRACKING_URI."""
    record, uri = recorded_run(run_dir), uri or tracking_uri()
    if record is None or uri is None or record.get("tracking_uri") != uri:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    if client.get_run(record["run_id"]).info.status == "RUNNING":
        client.set_terminated(record["run_id"], status=status)
        log.info("MLflow run %s left RUNNING by a killed process: marked %s", record["run_id"], status)
    return record["run_id"]


class Tracker:
    """Writes events, metrics, params and text artifacts; a no-op except on rank 0."""

    def __init__(
        self, run_dir: str | Path, experiment: str, *, enabled: bool = True, use_mlflow: bool = True,
        resumed_step: int | None = None, tags: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.client = None
        self.run_id: str | None = None
        self._monitor = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / METRICS_FILE, "a", buffering=1)  # closed in close()
        uri = tracking_uri() if use_mlflow else None
        if uri is not None:
            if importlib.util.find_spec("mlflow") is None:
                log.warning("%s is set but mlflow is not installed; logging to %s only", TRACKING_URI_ENV, METRICS_FILE)
            else:
                self._start_mlflow(uri, experiment, resumed_step, tags or {})

    def _start_mlflow(self, uri: str, experiment: str, resumed_step: int | None, tags: dict[str, str]) -> None:
        from mlflow.tracking import MlflowClient

        self.client, self._uri = MlflowClient(uri), uri
        record = recorded_run(self.run_dir)
        if record is not None and record.get("tracking_uri") != uri:
            log.warning("%s names a run in another MLflow store (%s); starting a new run", RUN_RECORD,
                        record.get("tracking_uri"))
            record = None
        if record is not None and resumed_step is not None:
            self.run_id = record["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            self.metrics(resumed_step, resumed_from_step=resumed_step)
            log.info("MLflow run %s continued at step %d", self.run_id, resumed_step)
        else:
            if record is not None:
                settle_run(self.run_dir, "KILLED", uri)
            self.run_id = self.client.create_run(experiment_id(self.client, experiment, uri),
                                                 run_name=self.run_dir.name, tags=tags).info.run_id
            record = {"run_id": self.run_id, "tracking_uri": uri, "experiment": experiment}
            (self.run_dir / RUN_RECORD).write_text(json.dumps(record, indent=2))
            log.info("MLflow run %s created in experiment %s", self.run_id, experiment)
        self._start_system_metrics(uri, resumed=resumed_step is not None)

    def _start_system_metrics(self, uri: str, resumed: bool) -> None:
        if importlib.util.find_spec("psutil") is None:
            log.info("psutil is not installed: no MLflow system metrics")
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(self.run_id, resume_logging=resumed, tracking_uri=uri)
        self._monitor.start()

    def _last_system_sample(self) -> None:
        """One closing sample of the system metrics, so a run shorter than the sampling interval has some."""
        monitor = self._monitor
        try:
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
        except Exception as error:  # system metrics are best effort: never fail a finished run over them
            log.warning("last system metrics sample not logged: %s", error)

    def event(self, kind: str, **fields: Any) -> None:
        """One line of the JSONL log."""
        if self.enabled:
            self._jsonl.write(json.dumps({"kind": kind, "time": time.time(), **fields}) + "\n")

    def params(self, params: dict[str, Any]) -> None:
        """The run's parameters; on a continued run, only new ones (MLflow's are immutable: a changed
        value becomes the tag `changed_on_resume.<name>`)."""
        if not self.enabled or self.client is None:
            return
        from mlflow.entities import Param, RunTag

        logged = self.client.get_run(self.run_id).data.params
        values = {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()}
        new = [Param(k, v) for k, v in sorted(values.items()) if k not in logged]
        changed = {k: v for k, v in sorted(values.items()) if logged.get(k, v) != v}
        for name, value in changed.items():
            log.warning("MLflow param %s was %r, now %r (kept as tag changed_on_resume.%s)", name, logged[name],
                        value, name)
        tags = [RunTag(f"changed_on_resume.{k}", v) for k, v in changed.items()]
        self.client.log_batch(self.run_id, params=new, tags=tags)

    def tags(self, tags: dict[str, str]) -> None:
        """Tags of the MLflow run (e.g. why it stopped early)."""
        if self.enabled and self.client is not None:
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)

    def config(self, config: dict) -> None:
        """The run's whole config as the artifact config.json."""
        if self.enabled and self.client is not None:
            self.client.log_dict(self.run_id, config, "config.json")

    def metrics(self, step: int, **values: float | None) -> None:
        """Per-step metrics: JSONL line "metrics" and MLflow (None values are left out)."""
        values = {k: v for k, v in values.items() if v is not None}
        self.event("metrics", step=step, **values)
        if self.enabled and self.client is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def text(self, text: str, artifact_file: str) -> None:
        """A text file in the run folder, and an MLflow artifact."""
        if not self.enabled:
            return
        path = self.run_dir / artifact_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if self.client is not None:
            self.client.log_text(self.run_id, text, artifact_file)

    def artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        if self.enabled and self.client is not None:
            self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def input_dataset(self, name: str, digest: str, source: str | Path, profile: dict, context: str = "training",
                      manifest: str | Path | None = None) -> None:
        """A data set the run reads, as an MLflow run input (name, digest, local source, profile), its digest
        and source as tags `fineforge.data.<context>.*`, and its `manifest` file as an artifact."""
        if not self.enabled or self.client is None:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        uri = str(Path(source).resolve())
        dataset = Dataset(name, digest[:MAX_DIGEST_CHARS], "local", json.dumps({"uri": uri}),
                          profile=json.dumps(profile))
        self.client.log_inputs(self.run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])
        for key, value in (("source", uri), ("digest", digest)):
            self.client.set_tag(self.run_id, f"fineforge.data.{context}.{key}", value)
        if manifest is not None:
            self.client.log_artifact(self.run_id, str(manifest), f"data/{context}")

    def close(self, status: str = "FINISHED") -> None:
        """Close the JSONL log; upload it, stop the system metrics and end the MLflow run with `status`."""
        if not self.enabled:
            return
        self._jsonl.close()
        if self.client is None:
            return
        if self._monitor is not None:
            self._monitor.finish()
            self._last_system_sample()
        self.client.log_artifact(self.run_id, str(self.run_dir / METRICS_FILE))
        self.client.set_terminated(self.run_id, status=status)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every line of a run's JSONL log."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
