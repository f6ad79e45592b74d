"""`fineforge deploy`: register the Prefect deployment of every flow (`prefect.yaml`) against PREFECT_API_URL."""

from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_output import console, fail
from fineforge.flows.deploy import PREFECT_FILE


def deploy(
    file: Path = typer.Option(PREFECT_FILE, "--file", "-f", help="The prefect.yaml that lists the deployments."),
    working_dir: Path = typer.Option(None, "--working-dir", help="Where the runs execute: relative paths in run "
                                     "parameters resolve here (default: the current directory)."),
) -> None:
    """Register every fineforge flow as a deployment of the `process` work pool, runnable from the Prefect UI."""
    from fineforge.flows.deploy import DeployError, deploy_all, prefect_api_url

    try:
        registered = deploy_all(file, (working_dir or Path.cwd()).resolve())
    except DeployError as e:
        fail(str(e))
    table = Table(title="Prefect deployments")
    table.add_column("deployment")
    table.add_column("id")
    for name, deployment_id in registered:
        table.add_row(name, str(deployment_id))
    console.print(table)
    console.print(f"run them from {prefect_api_url().removesuffix('/api')}/deployments")
