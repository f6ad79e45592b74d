"""Drive fineforge as a user does: the `fineforge` command in its own process, and the Prefect REST API the
Prefect UI calls (its Run button is `POST /deployments/{id}/create_flow_run`)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("prefect-server", "prefect-worker", "mlflow")
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# The test servers poll fast: a worker asks for work every 2 s, the scheduler plans runs every 5 s.
FAST_POLLING = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fineforge(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `fineforge ARGS` in its own process (environment: this one's plus `env`); return the finished process."""
    return subprocess.run([sys.executable, "-m", "fineforge.flows.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=cwd, timeout=timeout)


@dataclass(frozen=True)
class Server:
    """The services `fineforge server start` started, by URL."""

    home: Path
    prefect_url: str  # the UI; the API is under /api
    mlflow_url: str

    @property
    def api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def env(self) -> dict[str, str]:
        """What `fineforge server start` tells a user to export."""
        return {"PREFECT_API_URL": self.api_url, "MLFLOW_TRACKING_URI": self.mlflow_url}

    def api(self, method: str, path: str, body: dict | None = None, attempts: int = 5):
        """One call of the Prefect REST API; the decoded JSON answer. A 503 (the server's "retry me", e.g. its
        SQLite database busy on a loaded machine) is retried, as Prefect's own client does."""
        request = urllib.request.Request(f"{self.api_url}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                if error.code != 503 or attempt == attempts:
                    raise
                time.sleep(2 * attempt)

    def deployment(self, name: str) -> dict:
        return self.api("GET", f"/deployments/name/{name}")

    def run_deployment(self, name: str, parameters: dict) -> dict:
        """What the UI's Run button does: create a flow run of the deployment with the form's parameters."""
        return self.api("POST", f"/deployments/{self.deployment(name)['id']}/create_flow_run",
                        {"parameters": parameters})

    def wait_for_run(self, run_id: str, timeout: float) -> dict:
        """The flow run once it reached a final state (an AssertionError with its logs after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api("GET", f"/flow_runs/{run_id}")
            if run["state"]["type"] in FINAL_STATES:
                return run
            time.sleep(2)
        raise AssertionError(f"flow run {run_id} not finished after {timeout} s; logs:\n" + self.run_logs(run_id))

    def run_logs(self, run_id: str) -> str:
        logs = self.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"})
        return "\n".join(entry["message"] for entry in logs)

    def wait_for_log(self, run_id: str, text: str, timeout: float = 60) -> str:
        """The run's log once it holds `text` (logs reach the API a moment after the run's final state)."""
        deadline = time.monotonic() + timeout
        logs = self.run_logs(run_id)
        while text not in logs and time.monotonic() < deadline:
            time.sleep(1)
            logs = self.run_logs(run_id)
        return logs

    def artifacts(self, run_id: str) -> dict[str, dict]:
        """The run's artifacts by key."""
        found = self.api("POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
        return {artifact["key"]: artifact for artifact in found}


def tiny_pretrain_parameters(data: Path, run_dir: Path, experiment: str, steps: int = 6) -> dict:
    """`pretrain` flow parameters of the smallest pretraining that runs the real path (as in test_pretrain.py)."""
    return {"config": {"train": {
        "data_dir": str(data), "run_dir": str(run_dir), "experiment": experiment,
        "model_overrides": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
        "micro_batch_size": 4, "max_steps": steps, "warmup_steps": 2, "eval_every": 3, "eval_batches": 2,
        "sample_every": 3, "sample_tokens": 8, "checkpoint_every": 3,
    }, "launch": {"retries": 0}}}  # fmt: skip


def tiny_pipeline_parameters(shared_data: Path, workdir: Path) -> dict:
    """`pipeline` flow parameters: the tiny preset of prefect.yaml's `pipeline/tiny`, on the shared sample WARCs,
    writing into `workdir`."""
    from fineforge.flows.deploy import read_deployments

    (spec,) = [s for s in read_deployments() if s.entrypoint == "fineforge.flows.pipeline:pipeline"]
    config = json.loads(json.dumps(spec.parameters["config"]))
    config["workdir"] = str(workdir)
    config["data_build"]["input"] = str(shared_data / "warc" / Path(config["data_build"]["input"]).name)
    return {"config": config}


def start_server(home: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    """`fineforge server start` on free ports in `home`; fails with its output when it does not come up."""
    prefect_port, mlflow_port = free_port(), free_port()
    started = fineforge("server", "start", "--home", str(home), "--prefect-port", str(prefect_port),
                        "--mlflow-port", str(mlflow_port), *extra, env={**FAST_POLLING, **(env or {})})
    assert started.returncode == 0, started.stdout + started.stderr
    return Server(home, f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}")


def stop_server(home: Path) -> subprocess.CompletedProcess:
    return fineforge("server", "stop", "--home", str(home), timeout=120)


def service_pids(home: Path) -> dict[str, int]:
    """The pid of each service, from the pid files `fineforge server start` wrote."""
    return {name: json.loads((home / f"{name}.pid").read_text())["pid"] for name in SERVICES}


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(url: str) -> bool:
    """Something accepts connections at the URL's host and port."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def api_error(call) -> tuple[int, str]:
    """The HTTP status and body of a Prefect API call that is expected to be refused."""
    try:
        call()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    raise AssertionError("the API accepted the call")
