"""Shared fixtures: the real data in ../shared/data, one local Spark session, isolated Prefect and MLflow."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()

# Prefect reads its settings at import time: isolate it before any test imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="fineforge-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
os.environ.pop("PREFECT_API_URL", None)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"

# Prefect binds its console log handler to the sys.stderr of the moment it is first imported. Imported here, that
# is pytest's stream for the whole run; imported inside a CliRunner call, it would be that call's stream, closed
# when the call returns, and every later Prefect log line would print a "Logging error" traceback.
import prefect.main  # noqa: E402, F401  (prefect.main sets up its logging)


def pytest_collection_modifyitems(items):
    """Tests marked `slow` (real services, a browser) run last, never skipped: the quick ones report first."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.fixture(scope="session", autouse=True)
def prefect_temporary_server_stopped_in_time():
    """Stop Prefect's temporary API before pytest closes its captured streams (else a logging traceback at exit)."""
    yield
    from fineforge.flows.runtime import stop_temporary_server

    stop_temporary_server()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real third-party data of ../shared/data (read-only)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set FINEFORGE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spark():
    """One real local Spark session (2 cores, UI off) for the whole test run."""
    from fineforge.tasks.common.spark import SparkConfig, spark_session

    session = spark_session(SparkConfig(master="local[2]", app_name="fineforge-tests", ui=False))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its schema, made once: migrating a new store takes seconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch, mlflow_store_template) -> str:
    """A fresh MLflow store in a SQLite file (a copy of the empty template), the tracking URI for one test."""
    shutil.copyfile(mlflow_store_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models are chains of small ops: on a shared 2-core machine, intra-op threads only wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tool_caller():
    """A tiny chat model trained in seconds to call the python and search tools (testkit/tool_caller.py),
    with its bytes tokenizer; shared by the engine, tool loop and chat tests."""
    import torch

    from testkit.tool_caller import train_tool_caller

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_tool_caller()
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def search_workdir(shared_data, tmp_path_factory) -> Path:
    """A work dir with the search index of one real CommonCrawl page (the Aragonese Wikipedia's Escopete)."""
    from fineforge.tasks.search.config import SearchIndexConfig
    from fineforge.tasks.search.job import build_search_index
    from testkit.search_corpus import WET_FILES, wet_documents, write_dump

    workdir = tmp_path_factory.mktemp("search-work")
    dump = "CC-MAIN-2024-22"
    write_dump(workdir, dump, wet_documents(shared_data / "warc" / WET_FILES[dump]))
    build_search_index(workdir, SearchIndexConfig(workdir=str(workdir)))
    return workdir


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3 server on loopback (moto's server mode, its own process) for the whole test run."""
    from testkit.s3_store import s3_store

    with s3_store(tmp_path_factory.mktemp("s3")) as store:
        yield store


@pytest.fixture
def s3_workdir(s3_server, tmp_path, monkeypatch) -> str:
    """A work dir `s3://<new bucket>/work` in the test S3 server; this process's environment points at it, with
    its staging copy under tmp_path/staging."""
    import uuid

    for name, value in s3_server.env(tmp_path / "staging").items():
        monkeypatch.setenv(name, value)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    return s3_server.make_bucket(bucket) + "/work"
