"""The real services, started as a user starts them (`fineforge server start`), shared by the tests that need them."""

import pytest

from testkit.services import SERVICES, alive, fineforge, listening, service_pids, start_server, stop_server


@pytest.fixture(scope="session")
def fineforge_server(tmp_path_factory):
    """A Prefect server, a process worker and an MLflow server on free loopback ports, SQLite in a temp home.

    `fineforge server stop` is checked at the end: every process gone, nothing listening, `status` all down.
    """
    home = tmp_path_factory.mktemp("fineforge-server")
    server = start_server(home)
    pids = service_pids(home)
    yield server
    stopped = stop_server(home)
    assert stopped.returncode == 0, stopped.stderr
    assert set(stopped.stdout.removeprefix("stopped:").strip().split(", ")) == set(SERVICES)
    assert not listening(server.prefect_url) and not listening(server.mlflow_url)
    assert not any(alive(pid) for pid in pids.values())
    status = fineforge("server", "status", "--home", str(home))
    assert status.returncode == 1 and status.stdout.count(" down ") == len(SERVICES), status.stdout
