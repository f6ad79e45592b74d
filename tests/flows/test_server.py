"""`fineforge server start | status | stop` as a user runs them: real processes, real ports, SQLite and PostgreSQL.
Stopping the shared SQLite server is checked where it stops (tests/flows/conftest.py)."""

import pytest
from mlflow.tracking import MlflowClient

from testkit.postgres import postgres_role, psql
from testkit.services import SERVICES, fineforge, free_port, listening, service_pids, start_server, stop_server

pytestmark = pytest.mark.slow


def test_status_reports_every_service_up_and_a_second_start_changes_nothing(fineforge_server):
    home = fineforge_server.home
    status = fineforge("server", "status", "--home", str(home))
    assert status.returncode == 0 and status.stdout.count(" up ") == len(SERVICES), status.stdout
    running = service_pids(home)

    again = fineforge("server", "start", "--home", str(home))  # other (default) ports: the running ones win
    assert again.returncode == 0, again.stderr
    assert service_pids(home) == running
    assert f"export PREFECT_API_URL={fineforge_server.api_url}" in again.stdout
    assert f"export MLFLOW_TRACKING_URI={fineforge_server.mlflow_url}" in again.stdout
    assert all((home / f"{name}.log").stat().st_size > 0 for name in SERVICES)


def test_a_port_in_use_is_one_line_and_starts_nothing(fineforge_server, tmp_path):
    port = fineforge_server.prefect_url.rsplit(":", 1)[1]
    other = fineforge("server", "start", "--home", str(tmp_path), "--prefect-port", port)
    assert other.returncode == 1 and other.stderr.count("\n") == 1, other.stderr
    assert f"port {port} on 127.0.0.1 is in use" in other.stderr and "--prefect-port" in other.stderr
    assert not list(tmp_path.glob("*.pid"))


@pytest.fixture
def postgres():
    with postgres_role() as role:
        yield role


def test_postgresql_keeps_prefect_and_mlflow_data_in_their_own_databases(postgres, tmp_path):
    role, password, url = postgres.name, postgres.password, postgres.url()
    home = tmp_path / "server"
    try:
        server = start_server(home, "--database-url", url)
        assert (home / "server.json").stat().st_mode & 0o077 == 0  # it holds the password
        experiment = MlflowClient(tracking_uri=server.mlflow_url).create_experiment("postgres-check")
        assert psql("SELECT name FROM work_pool", database=role) == "fineforge"  # made by `server start`
        assert psql(f"SELECT name FROM experiments WHERE experiment_id = {experiment}",
                    database=f"{role}_mlflow") == "postgres-check"
        status = fineforge("server", "status", "--home", str(home))
        assert status.returncode == 0 and password not in status.stdout
    finally:
        assert stop_server(home).returncode == 0
    assert not listening(server.prefect_url) and not listening(server.mlflow_url)


def test_a_wrong_database_url_is_one_line(tmp_path):
    result = fineforge("server", "start", "--home", str(tmp_path), "--database-url", "mysql://u:secret@host/db")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "--database-url: expected postgresql://" in result.stderr and "secret" not in result.stderr


@pytest.mark.parametrize("api_url", [None, "unreachable"])
def test_deploy_without_a_reachable_server_is_one_line(api_url):
    env = {"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"} if api_url else {}
    result = fineforge("deploy", env=env, timeout=300)  # the tests' own environment has no PREFECT_API_URL
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "fineforge server start" in result.stderr and "PREFECT_API_URL" in result.stderr
