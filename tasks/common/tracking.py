"""MLflow bookkeeping: an explicit tracking URI, numeric statistics as metrics, files as artifacts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fineforge.tasks.common.stage import stats_rows


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
            metrics[metric_name(row["dump"], row["stage"], row["step"], row["metric"])] = float(row["value"])
    if metrics:
        mlflow.log_metrics(metrics)


def flatten_params(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> flat MLflow params (`filters.languages` = "['en']"), values cut to MLflow's limit."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            params.update(flatten_params(value, f"{name}."))
        else:
            params[name] = str(value)[:6000]
    return params


def record_stage_run(
    tracking_uri: str, experiment: str, run_name: str, params: dict, stages: list[dict], files: list[Path]
) -> str:
    """Create an MLflow run holding the config as params, every stage's stats as metrics and files as artifacts."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(flatten_params(params))
        for stats in stages:
            log_stage_stats(stats)
        for path in map(Path, files):
            if path.is_file():
                mlflow.log_artifact(str(path), artifact_path=f"{path.parent.parent.name}/{path.parent.name}")
        return run.info.run_id
