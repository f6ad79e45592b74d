"""MLflow for the tasks layer, in one place: the tracking URI, and the run that records a data build (config as
params, statistics as metrics, stats.json files as artifacts). Training runs are kept by the trainer itself
(`model/tracking.py`), which runs on machines without this layer.

MLflow is reached through an explicit tracking URI only (never a global default), so a test or a user
choosing a store in one place cannot leak into another.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from fineforge.tasks.common.statistics import stats_rows

log = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MLFLOW_DB = "mlflow.db"
SQLITE_PREFIX = "sqlite:///"
ARTIFACTS_DIR = "mlartifacts"  # beside a SQLite store: the artifacts of its experiments
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def tracking_uri(workdir: Path, configured: str | None = None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else the embedded default: a SQLite file in the work dir."""
    if configured:
        return configured
    if os.environ.get(TRACKING_URI_ENV):
        return os.environ[TRACKING_URI_ENV]
    return f"sqlite:///{(Path(workdir) / MLFLOW_DB).resolve()}"


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a local SQLite store (MLflow's own default would be
    ./mlruns in whatever the current directory is), else the tracking server's default."""
    if uri.startswith(SQLITE_PREFIX):
        return (Path(uri.removeprefix(SQLITE_PREFIX)).resolve().parent / ARTIFACTS_DIR).as_uri()
    return None


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def open_run(uri: str, experiment: str, run_name: str) -> str:
    """Create a run (and its experiment when new) at `uri`; return its id."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment, artifact_location(uri))
    run = client.create_run(experiment_id, run_name=run_name)
    log.info("MLflow run %s in experiment %s at %s", run.info.run_id, experiment, uri)
    return run.info.run_id


def metric_name(*parts: str) -> str:
    """MLflow metric names allow only alphanumerics, _ - . / and space."""
    return "/".join(re.sub(r"[^\w\-. /]", "_", p) for p in parts if p)


def stage_metrics(statistics: Mapping[str, Any]) -> dict[str, float]:
    """A stage's numeric statistics as metrics named `<dump>/<stage>/<step>/<metric>`."""
    metrics = {}
    for row in stats_rows(statistics):
        if isinstance(row["value"], int | float):
            metrics[metric_name(row["dump"], row["stage"], row["step"], row["metric"])] = float(row["value"])
    return metrics


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> flat MLflow params (`filters.language.languages` = "['en']"), values cut to MLflow's limit."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            params.update(flatten_params(value, f"{name}."))
        else:
            params[name] = str(value)[:MAX_PARAM_CHARS]
    return params


def record_stages(uri: str, experiment: str, run_name: str, config: Mapping[str, Any],
                  statistics: list[Mapping[str, Any]], files: list[Path]) -> str:
    """One finished run holding the config as params, every stage's statistics as metrics and `files` as artifacts
    (under `<group>/<stage>/`, the two folders above each file)."""
    from mlflow.entities import Metric, Param

    run_id = open_run(uri, experiment, run_name)
    client = _client(uri)
    now = int(time.time() * 1000)
    metrics = {name: value for stats in statistics for name, value in stage_metrics(stats).items()}
    client.log_batch(
        run_id,
        metrics=[Metric(name, value, now, 0) for name, value in metrics.items()],
        params=[Param(name, value) for name, value in flatten_params(config).items()],
    )
    for path in map(Path, files):
        if path.is_file():
            client.log_artifact(run_id, str(path), artifact_path=f"{path.parent.parent.name}/{path.parent.name}")
    client.set_terminated(run_id, status="FINISHED")
    return run_id


@task(name="track-in-mlflow", cache_policy=NO_CACHE)
def track_stages(uri: str, experiment: str, run_name: str, config: dict, statistics: list[dict],
                 files: list[Path]) -> str:
    """Prefect task: record stages (a data build) as one MLflow run; return its id."""
    return record_stages(uri, experiment, run_name, config, statistics, files)
