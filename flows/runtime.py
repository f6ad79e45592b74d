"""Environment for the embedded defaults: Prefect's temporary local API and MLflow in a SQLite file.

Call `prepare_runtime(workdir)` after the config is validated and before Prefect is imported: Prefect
reads its settings at import time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_LOGGERS = ("fineforge",)  # their INFO records (stage progress) reach the Prefect log
DRAIN_SECONDS = 10  # at most this long to send Prefect's queued logs and events before its temporary API stops


def prepare_runtime(workdir: Path) -> None:
    """Give the work dir its own Prefect home (unless a real Prefect server or home is configured).

    A configured Prefect server that does not answer is one error line and exit 2, before any work.
    """
    if os.environ.get("PREFECT_API_URL"):
        require_prefect_api()
    elif not os.environ.get("PREFECT_HOME"):
        home = (Path(workdir) / ".prefect").resolve()
        home.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", ",".join(PROJECT_LOGGERS))  # levels: flows/__init__.py
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def require_prefect_api() -> None:
    """Exit with one line when $PREFECT_API_URL does not answer."""
    from fineforge.flows.cli_output import fail
    from fineforge.flows.deploy import DeployError, prefect_api_url

    try:
        prefect_api_url()
    except DeployError as e:
        fail(str(e))

def stop_temporary_server() -> None:
    """Stop Prefect's temporary local API now, while stdout is still open.

    Prefect stops it in an `atexit` hook that logs "Stopping temporary server" through a console handler bound
    to the stream of the time Prefect was imported; when that stream is already closed (pytest's capture, a
    `CliRunner`, a closed pipe) the hook printed a "Logging error ... I/O operation on closed file" traceback.
    Stopping it first (after sending the queued logs and events it still has to receive) leaves the hook
    nothing to do.
    """
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:  # Prefect never started a temporary server in this process
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=DRAIN_SECONDS)
    for server in list(server_module.SubprocessASGIServer._instances.values()):
        server.stop()
