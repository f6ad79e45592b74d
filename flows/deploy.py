"""Register fineforge's flows as Prefect deployments of a `process` work pool, against PREFECT_API_URL.

`prefect.yaml` at the repository root lists the deployments (one per flow, module-path entrypoints); Prefect's
own `prefect deploy --all` reads it, and so does `fineforge deploy`, which registers each entry with Prefect's
`Flow.to_deployment(...).apply()`, with the entry's schedules (cron, time zone, active), concurrency limit
and triggers (each becomes a Prefect automation that runs the deployment). A `process` worker of the pool
(`fineforge server start` starts one) runs the flow runs: the Run button of the Prefect UI, the API, a
schedule or an automation. Relative paths in run parameters resolve against the working directory recorded
with the deployment (where `fineforge deploy` ran, as `prefect deploy` does).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from fineforge.flows.services import WORK_POOL, ensure_work_pool, health_problem

PREFECT_FILE = Path(__file__).resolve().parents[1] / "prefect.yaml"  # the checkout's (editable install)
DEPLOYMENT_KEYS = {"name", "entrypoint", "description", "tags", "parameters", "work_pool", "schedules",
                   "concurrency_limit", "triggers"}
SCHEDULE_KEYS = {"cron", "timezone", "active"}
BUILD_CONCURRENCY = 1  # runs of one data_build deployment at a time: a scheduled rebuild never overlaps the last


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
    schedules: tuple[dict[str, Any], ...] = ()  # {cron, timezone, active}
    concurrency_limit: int | None = None  # runs at a time; more wait (Prefect's ENQUEUE)
    triggers: tuple[dict[str, Any], ...] = ()  # Prefect deployment triggers: each becomes an automation


def read_deployments(path: Path = PREFECT_FILE) -> list[DeploymentSpec]:
    """The deployments a `prefect.yaml` lists; a clear error for a missing file or an entry it cannot use."""
    import yaml

    if not Path(path).is_file():
        raise DeployError(f"deployment file not found: {path} (pass --file PATH to a prefect.yaml)")
    try:
        entries = (yaml.safe_load(Path(path).read_text()) or {}).get("deployments") or []
    except yaml.YAMLError as e:
        raise DeployError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    return [_deployment_spec(entry, f"{path}: deployment {number}") for number, entry in enumerate(entries, 1)]


def _deployment_spec(entry: dict[str, Any], where: str) -> DeploymentSpec:
    """One entry of a prefect.yaml, checked: one line naming the entry and the problem."""
    unknown = sorted(set(entry) - DEPLOYMENT_KEYS)
    if unknown or not entry.get("name") or not entry.get("entrypoint"):
        problem = f"unsupported keys {unknown}" if unknown else "needs a name and an entrypoint"
        raise DeployError(f"{where} {problem}")
    schedules = tuple(entry.get("schedules") or ())
    for schedule in schedules:
        if not schedule.get("cron") or set(schedule) - SCHEDULE_KEYS:
            raise DeployError(f"{where} schedules: each needs a cron and may have {sorted(SCHEDULE_KEYS - {'cron'})}")
        try:
            cron_schedule(schedule["cron"], schedule.get("timezone"))
        except DeployError as e:
            raise DeployError(f"{where} schedules: {str(e).removeprefix('--')}") from None
    pool = (entry.get("work_pool") or {}).get("name", WORK_POOL)
    return DeploymentSpec(entry["name"], entry["entrypoint"], entry.get("description", ""),
                          tuple(entry.get("tags") or ()), entry.get("parameters") or {}, pool, schedules,
                          entry.get("concurrency_limit"), tuple(entry.get("triggers") or ()))


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


def deployment_schedules(spec: DeploymentSpec) -> list:
    """The schedules of a deployment entry as Prefect's (cron, time zone, active)."""
    from prefect.deployments.schedules import create_deployment_schedule_create

    return [create_deployment_schedule_create(cron_schedule(s["cron"], s.get("timezone")), s.get("active", True))
            for s in spec.schedules]


def register(flow, spec: DeploymentSpec, working_dir: Path) -> UUID:
    """Create or update the deployment of `flow` described by `spec`, run in `working_dir`, with its schedules,
    concurrency limit and triggers (Prefect automations, replaced on each registration); return its id."""
    from prefect.deployments.runner import EntrypointType
    from pydantic import ValidationError

    try:
        deployment = flow.to_deployment(
            name=spec.name, description=spec.description or None, tags=list(spec.tags),
            parameters=spec.parameters, schedules=deployment_schedules(spec), concurrency_limit=spec.concurrency_limit,
            triggers=list(spec.triggers), job_variables={"working_dir": str(working_dir)},
            entrypoint_type=EntrypointType.MODULE_PATH,
        )  # fmt: skip
    except ValidationError as e:
        raise DeployError(f"deployment {flow.name}/{spec.name}: {' '.join(str(e).split())}") from None
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


def schedule_flow(flow, name: str, parameters: dict[str, Any], cron: str, timezone: str, working_dir: Path,
                  pool: str = WORK_POOL) -> UUID:
    """Register `flow` as a deployment that runs with `parameters` on a cron schedule in `timezone`, one run at a
    time (a run due while the last one still runs waits for it)."""
    cron_schedule(cron, timezone)  # a wrong value fails before the server is asked
    ensure_work_pool(prefect_api_url(), pool)
    entrypoint = f"{flow.fn.__module__}:{flow.fn.__name__}"
    description = f"{flow.description or flow.name} Runs on the schedule `{cron}` ({timezone}), one run at a time."
    spec = DeploymentSpec(name, entrypoint, description, ("fineforge", "scheduled"), parameters, pool,
                          ({"cron": cron, "timezone": timezone},), BUILD_CONCURRENCY)
    return register(flow, spec, working_dir)
