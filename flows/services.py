"""The local services behind `fineforge server`: a Prefect server, a worker of the `process` work pool, and an
MLflow tracking server that serves artifacts, all on 127.0.0.1.

Each runs detached in its own process group, with `<home>/<service>.log` and `<home>/<service>.pid`; `<home>/
server.json` keeps the ports so that `status` and `stop` find them. State lives under the same folder: SQLite
files by default (`<home>/prefect/prefect.db`, `<home>/mlflow/mlflow.db`), or two databases of a PostgreSQL
server (`<name>` for Prefect, `<name>_mlflow` for MLflow) when a `postgresql://` URL is given; MLflow's
artifacts go to `<home>/mlflow/artifacts`, or to an object store (`s3://bucket/prefix`: the MLflow server reads
its endpoint and credentials from its environment, `MLFLOW_S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...); clients
upload and download through the server either way.
"""

import json
import logging
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_HOME = Path.home() / ".fineforge" / "server"
PREFECT_PORT = 4200
MLFLOW_PORT = 5000
MLFLOW_WORKERS = 1  # one local user; more workers made stopping take ~15 s (uvicorn drains each)
WORK_POOL = "fineforge"
STATE_FILE = "server.json"
STARTUP_SECONDS = 300  # a cold Prefect server migrates its database first: minutes on a busy 2-core machine
STOP_SECONDS = 30
HEALTH_TIMEOUT_SECONDS = 5
# Handed to the worker's flow runs: the project's loggers reach the run logs of the Prefect UI.
RUN_ENV = {"PREFECT_LOGGING_EXTRA_LOGGERS": "fineforge", "SPARK_LOCAL_IP": HOST, "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": os.environ.get("DO_NOT_TRACK", "1")}  # Prefect's client telemetry, unless the user chose


class ServiceError(RuntimeError):
    """A service cannot start or be reached; the message is one line that names the cause."""


@dataclass(frozen=True)
class ServerSettings:
    """Where the services listen and keep their state."""

    home: Path
    prefect_port: int = PREFECT_PORT
    mlflow_port: int = MLFLOW_PORT
    database_url: str | None = None  # postgresql://user:password@host:port/name; None: SQLite files
    artifacts_destination: str | None = None  # where MLflow keeps artifacts, e.g. s3://bucket/mlflow; None: home

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"


@dataclass(frozen=True)
class Service:
    """One detached process: its command line, extra environment and how to tell it answers."""

    name: str
    command: list[str]
    env: dict[str, str]
    health_url: str | None = None  # None: alive is enough (the worker listens on no port)
    port: int | None = None


@dataclass(frozen=True)
class ServiceState:
    name: str
    up: bool
    pid: int | None
    url: str
    log: Path


def health_problem(url: str) -> str | None:
    """Why `url` does not answer 200, or None when it does."""
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return str(getattr(e, "reason", None) or e)


def redacted(url: str) -> str:
    """A database URL without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def database_urls(database_url: str) -> tuple[str, str]:
    """Prefect's (asyncpg) and MLflow's (psycopg2) URLs of `postgresql://.../NAME`: NAME and NAME_mlflow."""
    parts = urllib.parse.urlsplit(database_url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgresql", "postgres") or not name or not parts.hostname:
        raise ServiceError(f"--database-url: expected postgresql://USER:PASSWORD@HOST:PORT/NAME, got "
                           f"{redacted(database_url)}")
    prefect = parts._replace(scheme="postgresql+asyncpg").geturl()
    mlflow = parts._replace(scheme="postgresql+psycopg2", path=f"/{name}_mlflow").geturl()
    return prefect, mlflow


def create_databases(database_url: str) -> None:
    """Create Prefect's and MLflow's databases on the PostgreSQL server unless they exist."""
    import psycopg2

    names = [urllib.parse.urlsplit(url).path.lstrip("/") for url in database_urls(database_url)]
    maintenance = urllib.parse.urlsplit(database_url)._replace(path="/postgres").geturl()
    try:
        connection = psycopg2.connect(maintenance, connect_timeout=HEALTH_TIMEOUT_SECONDS)
    except psycopg2.Error as e:
        raise ServiceError(f"cannot connect to PostgreSQL at {redacted(database_url)}: {first_line(e)}") from None
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,))
            existing = {row[0] for row in cursor.fetchall()}
            for name in names:
                if name not in existing:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    except psycopg2.Error as e:
        raise ServiceError(f"cannot create the databases {names} (create them, or grant CREATEDB): "
                           f"{first_line(e)}") from None
    finally:
        connection.close()


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def services(settings: ServerSettings) -> list[Service]:
    """The three services, in start order."""
    home = settings.home
    python = sys.executable
    base = {"PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": settings.prefect_api_url, "MLFLOW_TRACKING_URI": settings.mlflow_url, **RUN_ENV}
    server_env = dict(base)
    mlflow_store = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    artifacts = settings.artifacts_destination or str(home / "mlflow" / "artifacts")
    if settings.database_url:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"], mlflow_store = database_urls(settings.database_url)
    return [
        Service("prefect-server",
                [python, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(settings.prefect_port)],
                server_env, f"{settings.prefect_api_url}/health", settings.prefect_port),
        Service("prefect-worker",
                [python, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process",
                 "--name", f"fineforge-{socket.gethostname()}"], base),
        Service("mlflow",
                [python, "-m", "mlflow", "server", "--host", HOST, "--port", str(settings.mlflow_port),
                 "--workers", str(MLFLOW_WORKERS), "--backend-store-uri", mlflow_store,
                 "--artifacts-destination", artifacts, "--serve-artifacts"],
                base, f"{settings.mlflow_url}/health", settings.mlflow_port),
    ]  # fmt: skip


def service_url(service: Service, settings: ServerSettings) -> str:
    if service.name == "prefect-server":
        return settings.prefect_api_url.removesuffix("/api")
    if service.name == "mlflow":
        return settings.mlflow_url
    return f"work pool {WORK_POOL}"


# ---- processes -----------------------------------------------------------------------------------------


def pid_file(home: Path, name: str) -> Path:
    return home / f"{name}.pid"


def running_pid(home: Path, service: Service) -> int | None:
    """The pid of the service's process when it is alive and still runs the service's command, else None."""
    try:
        recorded = json.loads(pid_file(home, service.name).read_text())
        cmdline = Path(f"/proc/{recorded['pid']}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        stat = Path(f"/proc/{recorded['pid']}/stat").read_text()
    except (OSError, ValueError, KeyError):
        return None
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return None if zombie or cmdline != recorded["command"] else recorded["pid"]


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def launch(home: Path, service: Service) -> int:
    """Start the service detached (own session and process group), output to its log; return its pid."""
    import subprocess

    if service.port is not None and port_in_use(service.port):
        flag = "--prefect-port" if service.name == "prefect-server" else "--mlflow-port"
        raise ServiceError(f"{service.name}: port {service.port} on {HOST} is in use by another program; "
                           f"pick a free one with {flag}")
    with open(home / f"{service.name}.log", "ab") as output:
        process = subprocess.Popen(service.command, cwd=home, env={**os.environ, **service.env},
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    pid_file(home, service.name).write_text(json.dumps({"pid": process.pid, "command": service.command}))
    while process.poll() is None and running_pid(home, service) is None:  # until the child has exec'd
        time.sleep(0.05)
    return process.pid


def wait_healthy(home: Path, service: Service) -> None:
    """Wait until the service answers its health URL; a clear error (with its log's path) if it dies first."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if running_pid(home, service) is None:
            raise ServiceError(f"{service.name} exited during startup; see {home / f'{service.name}.log'}")
        if service.health_url is None or health_problem(service.health_url) is None:
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"{service.name} did not answer {service.health_url} within {STARTUP_SECONDS} s; "
                               f"see {home / f'{service.name}.log'}")
        time.sleep(1)


def terminate(home: Path, service: Service) -> bool:
    """Stop the service's whole process group (SIGTERM, then SIGKILL); False when it was not running."""
    pid = running_pid(home, service)
    pid_file(home, service.name).unlink(missing_ok=True)
    if pid is None:
        return False
    for sig, seconds in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
    return True


# ---- the three commands ----------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it may hold a database password)."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)


def read_settings(home: Path) -> ServerSettings | None:
    try:
        values = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return ServerSettings(home=home, **values)


def start(settings: ServerSettings) -> list[ServiceState]:
    """Start whichever services are not running (those that are keep their settings); wait until they answer."""
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    recorded = read_settings(home)
    if recorded and any(running_pid(home, s) for s in services(recorded)):
        settings = recorded  # already (partly) running: keep its ports and database
    else:
        settings = replace(settings, home=home)
        if settings.database_url:
            create_databases(settings.database_url)
        write_private(home / STATE_FILE, json.dumps({k: v for k, v in asdict(settings).items() if k != "home"}))
    local_artifacts = [] if settings.artifacts_destination else ["mlflow/artifacts"]
    for sub in ("prefect", "mlflow", *local_artifacts):
        (home / sub).mkdir(parents=True, exist_ok=True)
    launched: list[Service] = []
    try:
        for service in services(settings):
            if running_pid(home, service) is None:
                log.info("starting %s", service.name)
                launch(home, service)
                launched.append(service)
            wait_healthy(home, service)
            if service.name == "prefect-server":
                ensure_work_pool(settings.prefect_api_url)
    except ServiceError:
        for service in reversed(launched):  # a half-started set is of no use: leave nothing of it running
            terminate(home, service)
        raise
    return status(home)


def ensure_work_pool(api_url: str, name: str = WORK_POOL) -> None:
    """Create a `process` work pool (by default the one the worker serves) unless it exists."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with SyncPrefectClient(api_url) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def status(home: Path) -> list[ServiceState]:
    """Each service: up (alive, and answering its health URL where it has one) or down."""
    home = home.resolve()
    settings = read_settings(home) or ServerSettings(home)
    states = []
    for service in services(settings):
        pid = running_pid(home, service)
        up = pid is not None and (service.health_url is None or health_problem(service.health_url) is None)
        states.append(ServiceState(service.name, up, pid, service_url(service, settings),
                                   home / f"{service.name}.log"))
    return states


def stop(home: Path) -> list[str]:
    """Stop every service, in reverse start order; return the names of those that were running."""
    home = home.resolve()
    settings = read_settings(home) or ServerSettings(home)
    return [s.name for s in reversed(services(settings)) if terminate(home, s)]
