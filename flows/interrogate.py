"""The `interrogate` flow: knowledge-based refusal data from a chat checkpoint (Llama 3's recipe).

It samples k replies per question of known answer, judges them, and writes SFT data in which the questions the
model knows keep their answer and the ones it gets consistently wrong are refused; the per-question results
become a Prefect table artifact (`interrogation-results`) and an MLflow run.
"""

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from fineforge.tasks.interrogation import (
    InterrogationConfig,
    InterrogationReport,
    record_interrogation,
    run_interrogation,
)
from fineforge.tasks.tracking import tracking_uri

RESULTS_ARTIFACT = "interrogation-results"


@task(name="interrogate", cache_policy=NO_CACHE)
def interrogate_task(config: InterrogationConfig) -> InterrogationReport:
    """Ask every question k times and write the SFT data, the per-question results and the summary."""
    return run_interrogation(config)


@task(name="record-interrogation", cache_policy=NO_CACHE)
def record_task(config: InterrogationConfig, report: InterrogationReport, uri: str) -> str:
    """The MLflow run of the interrogation."""
    return record_interrogation(config, report, uri)


@flow(name="interrogate", description="Interrogate a chat checkpoint with questions of known answers and write "
      "SFT data that refuses what it gets consistently wrong.")
def interrogate(config: InterrogationConfig, mlflow_tracking_uri: str | None = None) -> dict:
    """Interrogate, publish the per-question table, record the MLflow run; returns the counts and where they are.

    `mlflow_tracking_uri`: default $MLFLOW_TRACKING_URI, else SQLite in the output folder."""
    report = interrogate_task(config)
    create_table_artifact(report.rows, key=RESULTS_ARTIFACT,
                          description=f"{report.summary['known']} known, {report.summary['unknown']} unknown "
                          f"({report.summary['refusals_left_out']} left out of the SFT data), of "
                          f"{report.summary['questions']} questions; SFT data: {report.output_dir}")
    uri = tracking_uri(report.output_dir, mlflow_tracking_uri)
    run_id = record_task(config, report, uri)
    return {**report.summary, "output_dir": str(report.output_dir), "mlflow_run_id": run_id,
            "mlflow_tracking_uri": uri}
