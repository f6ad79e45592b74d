"""MLflow bookkeeping: an explicit tracking URI, numeric statistics as metrics, files as artifacts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tasks.stage import stats_rows


def mlflow_enabled() -> bool:
    """MLflow is used only when a tracking URI is configured explicitly."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


def default_tracking_uri(workdir: Path) -> str:
    """The embedded default: a SQLite file under the work dir."""
    return f"sqlite:///{(Path(workdir) / 'mlflow.db').resolve()}"


def metric_name(*parts: str) -> str:
    """MLflow metric names allow only alphanumerics, _ - . / and space."""
    return "/".join(re.sub(r"[^\w\-. /]", "_", p) for p in parts if p)


def log_stage_stats(stats: dict) -> None:
    """Log a stage's numeric statistics as metrics of the active MLflow run."""
    import mlflow

    metrics = {}
    for row in stats_rows(stats):
        if isinstance(row["value"], int | float):
            metrics[metric_name(row["stage"], row["step"], row["metric"])] = float(row["value"])
    if metrics:
        mlflow.log_metrics(metrics)
