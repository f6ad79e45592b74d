"""The Prefect task that runs a training stage under torchrun on node 0; a retry relaunches it, and it resumes
from its newest checkpoint. A job its workers refused (bad config, data or checkpoint) is not retried."""

from __future__ import annotations

from prefect import Task, task
from prefect.client.schemas.objects import TaskRun
from prefect.logging import get_run_logger
from prefect.states import State

from fineforge.tasks.training.launch import LaunchConfig, TorchrunError, launch_training


def retry_unless_refused(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect's retry condition: relaunch after a failure of the running job, never after a refusal."""
    error = state.result(raise_on_failure=False)
    return not (isinstance(error, TorchrunError) and error.refused)


@task(name="torchrun", retry_condition_fn=retry_unless_refused)
def torchrun_task(module: str, config: dict, config_path: str, launch: LaunchConfig, env: dict[str, str]) -> None:
    """`launch_training` as a Prefect task on node 0 (retries set by the caller), its log in the run's log."""
    launch_training(module, config, config_path, launch, env, get_run_logger())
