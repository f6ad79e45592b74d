"""Environment for the embedded defaults: Prefect's temporary local API and MLflow in a SQLite file.

Call `prepare_runtime(workdir)` after the config is validated and before Prefect is imported: Prefect
reads its settings at import time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

PROJECT_LOGGERS = ("fineforge",)  # their INFO records (stage progress) reach the Prefect log


def prepare_runtime(workdir: Path) -> None:
    """Give the work dir its own Prefect home (unless a real Prefect server or home is configured)."""
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        home = (Path(workdir) / ".prefect").resolve()
        home.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", ",".join(PROJECT_LOGGERS))
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

