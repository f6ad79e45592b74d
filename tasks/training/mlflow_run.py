"""The MLflow run of a training job: created by the flow, joined by rank 0 of torchrun through MLFLOW_RUN_ID."""

from __future__ import annotations

import logging

from prefect import task

log = logging.getLogger(__name__)


@task(name="open-mlflow-run")
def open_mlflow_run(tracking_uri: str, experiment: str, run_name: str, tags: dict[str, str] | None = None) -> str:
    """Create a run (and its experiment when new); return its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags or {})
    log.info("MLflow run %s in experiment %s at %s", run.info.run_id, experiment, tracking_uri)
    return run.info.run_id


@task(name="close-mlflow-run")
def close_mlflow_run(tracking_uri: str, run_id: str, status: str) -> None:
    """Mark the run FINISHED or FAILED."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_terminated(run_id, status=status)
