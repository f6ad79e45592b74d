"""`fineforge server start | stop | status`: the Prefect server, a worker and the MLflow server on 127.0.0.1."""

from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_output import console, fail
from fineforge.flows.services import DEFAULT_HOME, MLFLOW_PORT, PREFECT_PORT

server_app = typer.Typer(no_args_is_help=True)

HOME_HELP = "Folder of the services' state, logs and pid files."


@server_app.command("start")
def start(
    home: Path = typer.Option(DEFAULT_HOME, "--home", help=HOME_HELP),
    prefect_port: int = typer.Option(PREFECT_PORT, help="Port of the Prefect server and UI."),
    mlflow_port: int = typer.Option(MLFLOW_PORT, help="Port of the MLflow tracking server and UI."),
    database_url: str = typer.Option(None, help="postgresql://USER:PASSWORD@HOST:PORT/NAME: Prefect's data in "
                                     "database NAME, MLflow's in NAME_mlflow (created if missing); default SQLite."),
    artifacts_destination: str = typer.Option(None, help="Where the MLflow server keeps artifacts, e.g. "
                                              "s3://bucket/mlflow (endpoint and keys from its environment: "
                                              "MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); "
                                              "default HOME/mlflow/artifacts."),
) -> None:
    """Start whichever services are not running yet, wait until they answer, print their URLs."""
    from fineforge.flows.services import ServerSettings, ServiceError
    from fineforge.flows.services import start as start_services

    console.print(f"services in {home}: starting those not running (a first start sets up the databases: up to a "
                  "few minutes)", soft_wrap=True)
    try:
        settings = ServerSettings(home, prefect_port, mlflow_port, database_url, artifacts_destination)
        states = start_services(settings)
    except ServiceError as e:
        fail(str(e), code=1)
    console.print(status_table(states))
    prefect_ui, mlflow_ui = states[0].url, states[2].url
    console.print(f"Prefect UI: {prefect_ui}\nMLflow UI:  {mlflow_ui}\nUse them from this shell with:")
    console.print(f"export PREFECT_API_URL={prefect_ui}/api\nexport MLFLOW_TRACKING_URI={mlflow_ui}",
                  highlight=False, soft_wrap=True)


@server_app.command("status")
def status(home: Path = typer.Option(DEFAULT_HOME, "--home", help=HOME_HELP)) -> None:
    """Each service up or down, with its URL and log; exit 1 when any is down."""
    from fineforge.flows.services import status as service_status

    states = service_status(home)
    console.print(status_table(states))
    if not all(state.up for state in states):
        raise typer.Exit(code=1)


@server_app.command("stop")
def stop(home: Path = typer.Option(DEFAULT_HOME, "--home", help=HOME_HELP)) -> None:
    """Stop every service (their whole process groups)."""
    from fineforge.flows.services import stop as stop_services

    stopped = stop_services(home)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "no service was running")


def status_table(states) -> Table:
    table = Table(title="fineforge services")
    for column in ("service", "state", "pid", "url", "log"):
        table.add_column(column)
    for state in states:
        table.add_row(state.name, "[green]up[/]" if state.up else "[red]down[/]", str(state.pid or ""), state.url,
                      str(state.log))
    return table
