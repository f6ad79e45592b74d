"""Register fineforge's flows as Prefect deployments of a `process` work pool, against PREFECT_API_URL.

`prefect.yaml` at the repository root lists the deployments (one per flow, module-path entrypoints); Prefect's
own `prefect deploy --all` reads it, and so does `fineforge deploy`, which registers each entry with Prefect's
`Flow.to_deployment(...).apply()`. A `process` worker of the pool (`fineforge server start` starts one) runs the
flow runs: the Run button of the Prefect UI, the API, or a schedule. Relative paths in run parameters resolve
against the working directory recorded with the deployment (where `fineforge deploy` ran, as `prefect deploy`
does).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from fineforge.flows.services import WORK_POOL, ensure_work_pool, health_problem

PREFECT_FILE = Path(__file__).resolve().parents[1] / "prefect.yaml"  # the checkout's (editable install)
DEPLOYMENT_KEYS = {"name", "entrypoint", "description", "tags", "parameters", "work_pool"}


class DeployError(RuntimeError):
    """A deployment cannot be registered; the message is one line that names the cause."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of `prefect.yaml`."""

    name: str
    entrypoint: str
    description: str = ""
    tags: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    work_pool: str = WORK_POOL


def read_deployments(path: Path = PREFECT_FILE) -> list[DeploymentSpec]:
    """The deployments a `prefect.yaml` lists; a clear error for a missing file or an entry it cannot use."""
    import yaml

    if not Path(path).is_file():
        raise DeployError(f"deployment file not found: {path} (pass --file PATH to a prefect.yaml)")
    try:
        entries = (yaml.safe_load(Path(path).read_text()) or {}).get("deployments") or []
    except yaml.YAMLError as e:
        raise DeployError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    specs = []
    for number, entry in enumerate(entries, 1):
        unknown = sorted(set(entry) - DEPLOYMENT_KEYS)
        if unknown or not entry.get("name") or not entry.get("entrypoint"):
            problem = f"unsupported keys {unknown}" if unknown else "needs a name and an entrypoint"
            raise DeployError(f"{path}: deployment {number} {problem}")
        pool = (entry.get("work_pool") or {}).get("name", WORK_POOL)
        specs.append(DeploymentSpec(entry["name"], entry["entrypoint"], entry.get("description", ""),
                                    tuple(entry.get("tags") or ()), entry.get("parameters") or {}, pool))
    return specs


def prefect_api_url() -> str:
    """$PREFECT_API_URL, checked to answer; else one line saying how to start or reach the server."""
    url = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not url:
        raise DeployError("PREFECT_API_URL is not set: start the services with `fineforge server start` and "
                          "export the PREFECT_API_URL it prints (e.g. http://127.0.0.1:4200/api)")
    problem = health_problem(f"{url}/health")
    if problem:
        raise DeployError(f"PREFECT_API_URL={url} does not answer ({problem}): start the server (`fineforge server "
                          "start`), or unset PREFECT_API_URL to run on a temporary local one")
    return url


def register(flow, spec: DeploymentSpec, working_dir: Path, schedules: list | None = None) -> UUID:
    """Create or update the deployment of `flow` described by `spec`, run in `working_dir`; return its id."""
    from prefect.deployments.runner import EntrypointType

    deployment = flow.to_deployment(
        name=spec.name, description=spec.description or None, tags=list(spec.tags),
        parameters=spec.parameters, schedules=schedules, job_variables={"working_dir": str(working_dir)},
        entrypoint_type=EntrypointType.MODULE_PATH,
    )  # fmt: skip
    return deployment.apply(work_pool_name=spec.work_pool)


def load_flow(entrypoint: str):
    """The flow object an entrypoint (`package.module:flow`) names."""
    from prefect.flows import load_flow_from_entrypoint

    try:
        return load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
    except (ImportError, AttributeError, ValueError) as e:
        raise DeployError(f"entrypoint {entrypoint!r} does not load: {e}") from None


def deploy_all(path: Path, working_dir: Path) -> list[tuple[str, UUID]]:
    """Register every deployment of a `prefect.yaml` (creating their work pools); return (name, id) pairs."""
    specs = read_deployments(path)
    url = prefect_api_url()
    for pool in sorted({spec.work_pool for spec in specs}):
        ensure_work_pool(url, pool)
    registered = []
    for spec in specs:
        flow = load_flow(spec.entrypoint)
        registered.append((f"{flow.name}/{spec.name}", register(flow, spec, working_dir)))
    return registered


def cron_schedule(cron: str, timezone: str | None):
    """A Prefect cron schedule; one line naming the option (--cron, --timezone) when a value is wrong."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as e:
        error = e.errors()[0]
        raise DeployError(f"--{error['loc'][0]}: {error['msg'].removeprefix('Value error, ')}") from None


def schedule_flow(flow, name: str, parameters: dict[str, Any], schedule, working_dir: Path,
                  pool: str = WORK_POOL) -> UUID:
    """Register `flow` as a deployment that runs with `parameters` on `schedule` (a cron schedule)."""
    ensure_work_pool(prefect_api_url(), pool)
    entrypoint = f"{flow.fn.__module__}:{flow.fn.__name__}"
    description = f"{flow.description or flow.name} Runs on the schedule `{schedule.cron}` ({schedule.timezone})."
    spec = DeploymentSpec(name, entrypoint, description, ("fineforge", "scheduled"), parameters, pool)
    return register(flow, spec, working_dir, schedules=[schedule])
