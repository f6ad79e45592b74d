"""`fineforge server start | status | stop` as a user runs them: real processes, real ports, SQLite and PostgreSQL."""

import json
import secrets
import socket
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from testkit.services import fineforge, free_port, start_server, stop_server

pytestmark = pytest.mark.slow

SERVICES = ("prefect-server", "prefect-worker", "mlflow")
POSTGRES_CLUSTER = ("15", "main")


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port.split("/")[0]))) == 0


def pids(home: Path) -> dict[str, int]:
    return {name: json.loads((home / f"{name}.pid").read_text())["pid"] for name in SERVICES}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_start_is_idempotent_status_reports_and_stop_leaves_nothing_listening(tmp_path):
    home = tmp_path / "server"
    server = start_server(home)
    try:
        status = fineforge("server", "status", "--home", str(home))
        assert status.returncode == 0 and status.stdout.count(" up ") == 3, status.stdout
        running = pids(home)

        again = fineforge("server", "start", "--home", str(home))  # the defaults differ: the running ones win
        assert again.returncode == 0, again.stderr
        assert pids(home) == running
        assert f"export PREFECT_API_URL={server.api_url}" in again.stdout
        assert f"export MLFLOW_TRACKING_URI={server.mlflow_url}" in again.stdout

        port = server.prefect_url.rsplit(":", 1)[1]
        other = fineforge("server", "start", "--home", str(tmp_path / "other"), "--prefect-port", port)
        assert other.returncode == 1 and other.stderr.count("\n") == 1
        assert f"port {port} on 127.0.0.1 is in use" in other.stderr and "--prefect-port" in other.stderr
        assert not list((tmp_path / "other").glob("*.pid"))
    finally:
        stopped = stop_server(home)
    assert stopped.returncode == 0
    assert set(stopped.stdout.removeprefix("stopped:").strip().split(", ")) == set(SERVICES)
    assert not listening(server.prefect_url) and not listening(server.mlflow_url)
    assert not any(alive(pid) for pid in running.values())
    down = fineforge("server", "status", "--home", str(home))
    assert down.returncode == 1 and down.stdout.count(" down ") == 3
    assert all((home / f"{name}.log").stat().st_size > 0 for name in SERVICES)


@pytest.fixture
def postgres_role():
    """A login role with CREATEDB on the local PostgreSQL 15 cluster (started if it is down, stopped again after)."""
    version, cluster = POSTGRES_CLUSTER
    was_down = subprocess.run(["pg_ctlcluster", version, cluster, "status"], capture_output=True).returncode != 0
    if was_down:
        subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True)
    role, password = f"fineforge_{secrets.token_hex(4)}", secrets.token_hex(8)
    psql(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
    try:
        yield role, password
    finally:
        for database in (role, f"{role}_mlflow"):
            psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        psql(f"DROP ROLE {role}")
        if was_down:
            subprocess.run(["pg_ctlcluster", version, cluster, "stop"], check=True)


def psql(sql: str, database: str = "postgres") -> str:
    """Run SQL as the cluster's superuser (the tests run as root, as CI does)."""
    done = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-d", database, "-tAc", sql],
                          capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_postgresql_keeps_prefect_and_mlflow_data_in_their_own_databases(postgres_role, tmp_path):
    role, password = postgres_role
    port = psql("SHOW port")
    url = f"postgresql://{role}:{password}@127.0.0.1:{port}/{role}"
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
