"""Environment for the embedded defaults: Prefect's temporary local API and MLflow in a SQLite file.

Call `prepare_runtime(workdir)` after the config is validated and before Prefect is imported: Prefect
reads its settings at import time.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

PROJECT_LOGGERS = ("fineforge",)  # their INFO records (stage progress) reach the Prefect log
PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")  # where Prefect logs a run's failure
DRAIN_SECONDS = 10  # at most this long to send Prefect's queued logs and events before its temporary API stops


def prepare_runtime(workdir: Path, lock: bool = True) -> None:
    """Give the work dir its own Prefect home (unless a real Prefect server or home is configured), hold the
    work dir's lock (`lock`), and start Prefect's temporary local API as a child that ends with this process.

    A configured Prefect server that does not answer, or a work dir another run holds, is one error line and
    exit 2, before any work.
    """
    if os.environ.get("PREFECT_API_URL"):
        require_prefect_api()
    if lock:
        hold_lock(workdir)
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        home = (Path(workdir) / ".prefect").resolve()
        home.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", ",".join(PROJECT_LOGGERS))  # levels: flows/__init__.py
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    start_temporary_server()


class WithoutTraceback(logging.Filter):
    """Keeps a log record's message but drops the traceback of the given errors."""

    def __init__(self, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.errors):
            record.exc_info = record.exc_text = None
        return True


def report_in_one_line(*errors: type[BaseException]) -> None:
    """Errors the command reports in one line of its own: Prefect logs that a task or flow failed with one of
    them without the traceback (its message names the cause; a traceback would bury the command's line)."""
    quiet = WithoutTraceback(errors)
    for name in PREFECT_RUN_LOGGERS:
        logging.getLogger(name).addFilter(quiet)


def require_spark_master(master: str) -> None:
    """Exit with one line when a cluster master does not answer, before anything is written."""
    from fineforge.flows.cli_output import fail
    from fineforge.tasks.common.spark import SparkMasterUnreachable, require_master

    try:
        require_master(master)
    except SparkMasterUnreachable as e:
        fail(f"spark.master: {e}")


def hold_lock(directory: Path) -> None:
    """Hold `directory`'s lock for the life of this process; exit with one line if another run holds it."""
    from fineforge.flows.cli_output import fail
    from fineforge.tasks.common.dir_lock import DirectoryLocked, lock_directory

    try:
        lock_directory(directory)
    except DirectoryLocked as e:
        fail(str(e))


def start_temporary_server() -> None:
    """Start Prefect's temporary local API now (the one its client would start on first use) and guard it, so
    that it stops with this process even when this process is killed."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    from fineforge.tasks.common.watchdog import guard

    if PREFECT_API_URL.value():  # a real server (the environment's or the profile's): nothing to start
        return
    server = SubprocessASGIServer()
    server.start()
    guard(server.server_process.pid)


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
