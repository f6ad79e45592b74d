"""Training metrics: a JSONL log in the run folder, and MLflow when it is installed and configured.

MLflow is used on rank 0 only, when MLFLOW_TRACKING_URI is set and the package imports. A run created by
the caller (Prefect) is joined through MLFLOW_RUN_ID and left open for the caller to close; otherwise a run
is created here and closed at the end.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_ID_ENV = "MLFLOW_RUN_ID"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
METRICS_FILE = "metrics.jsonl"


class Tracker:
    """Writes metrics, params and text artifacts; a no-op except on rank 0."""

    def __init__(self, run_dir: str | Path, experiment: str, enabled: bool = True, use_mlflow: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.client = None
        self.run_id: str | None = None
        self._owns_run = False
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / METRICS_FILE, "a", buffering=1)  # closed in close()
        if use_mlflow and os.environ.get(TRACKING_URI_ENV):
            self._start_mlflow(experiment)

    def _start_mlflow(self, experiment: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            log.warning("%s is set but mlflow is not installed; logging to %s only", TRACKING_URI_ENV, METRICS_FILE)
            return
        self.client = MlflowClient()
        self.run_id = os.environ.get(RUN_ID_ENV)
        if not self.run_id:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id
            self._owns_run = True
        log.info("MLflow run %s (%s)", self.run_id, "created" if self._owns_run else "joined")

    def event(self, kind: str, **fields: Any) -> None:
        """One line of the JSONL log."""
        if self.enabled:
            self._jsonl.write(json.dumps({"kind": kind, "time": time.time(), **fields}) + "\n")

    def params(self, params: dict[str, Any]) -> None:
        if self.enabled and self.client is not None:
            from mlflow.entities import Param

            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])

    def metrics(self, step: int, **values: float) -> None:
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

    def close(self, status: str = "FINISHED") -> None:
        if not self.enabled:
            return
        self._jsonl.close()
        if self.client is not None and self._owns_run:
            self.client.set_terminated(self.run_id, status=status)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every line of a run's JSONL log."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
