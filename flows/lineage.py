"""What links an MLflow run to the Prefect flow run that made it: the flow run's id and its page in the UI."""

from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL

FLOW_RUN_ID_TAG = "prefect.flow_run_id"
FLOW_RUN_URL_TAG = "prefect.flow_run_url"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests the run under its parent


def flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI, when the UI's address is known."""
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def prefect_run_tags() -> dict[str, str]:
    """MLflow tags naming the current Prefect flow run ({} outside one)."""
    run_id = flow_run.id
    if run_id is None:
        return {}
    url = flow_run_url(run_id)
    return {FLOW_RUN_ID_TAG: run_id, **({FLOW_RUN_URL_TAG: url} if url else {})}
