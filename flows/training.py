"""What every training flow does: launch a stage under torchrun (retried, resuming) and publish its summary."""

import json
from dataclasses import asdict
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from fineforge.flows.lineage import prefect_run_tags
from fineforge.model.tracking import TRACKING_URI_ENV, recorded_run, settle_run
from fineforge.model.trainer import SUMMARY_FILE, TrainerConfig
from fineforge.tasks.tracking import tag_run, tracking_uri
from fineforge.tasks.training.launch import LaunchConfig
from fineforge.tasks.training.torchrun import torchrun_task


def train_under_torchrun(module: str, train: TrainerConfig, launch: LaunchConfig, mlflow_tracking_uri: str | None,
                         config_file: str) -> dict:
    """Run `python -m <module>` to completion under torchrun; a failed launch is retried and resumes from the
    newest checkpoint. Returns the run's summary with `mlflow_run_id` and `mlflow_tracking_uri`; the MLflow run is
    tagged with the Prefect flow run's id and URL.

    The trainer keeps the run's MLflow run (continued on resume); if the job is given up on, a run its
    killed workers left RUNNING is marked FAILED (KILLED when the command was stopped by a signal)."""
    run_dir = Path(train.run_dir).resolve()
    uri = tracking_uri(run_dir, mlflow_tracking_uri) if train.use_mlflow else None
    env = {TRACKING_URI_ENV: uri} if uri else {}
    try:
        torchrun_task.with_options(retries=launch.retries)(module, asdict(train), str(run_dir / config_file), launch,
                                                           env)
    except BaseException as error:
        if uri:  # a run stopped by a signal (Ctrl-C, SIGTERM) is KILLED, one that failed FAILED
            settle_run(run_dir, "FAILED" if isinstance(error, Exception) else "KILLED", uri)
        raise
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    record = recorded_run(run_dir) if uri else None
    if record:
        tag_run(uri, record["run_id"], prefect_run_tags())
    return {**summary, "mlflow_run_id": record["run_id"] if record else None, "mlflow_tracking_uri": uri}


def publish_summary(result: dict, key: str, extra_rows: dict | None = None) -> None:
    """The run's summary (and `extra_rows`) as a markdown table artifact, with a link to its MLflow run."""
    rows = {k: v for k, v in result.items() if not k.startswith("mlflow_")} | (extra_rows or {})
    lines = [f"| {k} | {v} |" for k, v in rows.items()]
    create_markdown_artifact(
        "| | |\n|---|---|\n" + "\n".join(lines)
        + f"\n\nMLflow run: `{result['mlflow_run_id']}` at `{result['mlflow_tracking_uri']}`", key=key,
    )  # fmt: skip
