"""`fineforge data schedule`: the data build served as a Prefect deployment on a cron schedule, against a real
`prefect server` (the temporary local API has no scheduler)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app

STARTUP_SECONDS = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on a free loopback port, with its scheduler looping every few seconds."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until(lambda: healthy(url) or server.poll() is not None, STARTUP_SECONDS, "prefect server")
        assert server.poll() is None, (home / "server.log").read_text()[-3000:]
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_schedule_serves_a_cron_deployment_with_scheduled_runs(prefect_server, shared_data, tmp_path):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    config = tmp_path / "build.json"
    warc = shared_data / "warc" / "cc-main-2024-22-one-page.warc.gz"
    config.write_text(json.dumps({"input": str(warc), "workdir": str(tmp_path / "work"), "mlflow": False}))
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "data", "schedule", "--config", str(config), "--cron", "0 3 * * *",
         "--name", "nightly"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with SyncPrefectClient(prefect_server) as client:
            def deployment():
                try:
                    return client.read_deployment_by_name("data_build/nightly")
                except Exception:  # not created yet
                    return None if serve.poll() is None else pytest.fail(serve.stdout.read())

            found = wait_until(deployment, STARTUP_SECONDS, "the served deployment")
            assert [s.schedule.cron for s in found.schedules] == ["0 3 * * *"]
            assert found.parameters["config"]["input"] == str(warc)

            ids = DeploymentFilter(id=DeploymentFilterId(any_=[found.id]))
            runs = wait_until(lambda: client.read_flow_runs(deployment_filter=ids), 120, "scheduled runs")
            assert all(run.state.is_scheduled() for run in runs)
            from datetime import UTC

            starts = [run.expected_start_time.astimezone(UTC) for run in runs]
            assert all((start.hour, start.minute) == (3, 0) for start in starts), starts
    finally:
        serve.terminate()
        serve.wait(timeout=60)


def test_schedule_without_a_server_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["data", "schedule", "--cron", "0 3 * * *", "--input", str(tmp_path)])
    assert result.exit_code == 2
    assert "prefect server start" in result.output and "PREFECT_API_URL" in result.output
