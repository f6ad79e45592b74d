"""The real services, started as a user starts them (`fineforge server start`), shared by the tests that need them."""

import pytest

from testkit.services import start_server, stop_server


@pytest.fixture(scope="session")
def fineforge_server(tmp_path_factory):
    """A Prefect server, a process worker and an MLflow server on free loopback ports, SQLite in a temp home."""
    home = tmp_path_factory.mktemp("fineforge-server")
    try:
        yield start_server(home)
    finally:
        stopped = stop_server(home)
        assert stopped.returncode == 0, stopped.stderr
