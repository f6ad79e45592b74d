"""The torchrun launcher: command line, world size, a refused job as one clear error that is not retried."""

from __future__ import annotations

import json
import logging

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from pydantic import ValidationError

from fineforge.tasks.training.launch import LaunchConfig, TorchrunError, torchrun_command
from fineforge.tasks.training.torchrun import torchrun_task


def test_multi_node_arguments_replace_standalone():
    single = torchrun_command("fineforge.model.pretrain", "c.json", LaunchConfig(nproc_per_node=2))
    assert single[single.index("--standalone") + 1 : single.index("-m", 3)] == ["--nproc-per-node", "2"]
    multi = torchrun_command("fineforge.model.pretrain", "c.json", LaunchConfig(
        nproc_per_node=8, launcher_args=["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "h:29400"]))
    assert "--standalone" not in multi and multi[-4:] == ["-m", "fineforge.model.pretrain", "--config", "c.json"]
    assert multi[multi.index("--nnodes") + 1] == "2" and multi[multi.index("--nproc-per-node") + 1] == "8"


def test_world_size_counts_every_node_and_must_be_fixed():
    assert LaunchConfig(nproc_per_node=3).world_size == 3
    assert LaunchConfig(nproc_per_node=4, launcher_args=["--nnodes", "2", "--node-rank", "1"]).world_size == 8
    assert LaunchConfig(nproc_per_node=4, launcher_args=["--nnodes=3:3"]).world_size == 12
    for bad in (["--nnodes", "1:4"], ["--nnodes"], ["--nnodes=two"]):
        with pytest.raises(ValidationError, match="give a fixed number of nodes"):
            LaunchConfig(launcher_args=bad)


def test_a_refused_job_fails_once_with_its_reason(tmp_path, caplog):
    """Workers that refuse their config exit at once with one line; the task quotes it and does not retry."""
    config = {"data_dir": str(tmp_path), "run_dir": str(tmp_path / "run"), "lr": 0}

    @flow
    def launch_with_retries():
        state = torchrun_task.with_options(retries=2, retry_delay_seconds=0)(
            "fineforge.model.pretrain", config, str(tmp_path / "c.json"), LaunchConfig(nproc_per_node=2), {},
            return_state=True,
        )
        return state.state_details.task_run_id, state.result(raise_on_failure=False)

    with caplog.at_level(logging.INFO):
        task_run_id, error = launch_with_retries()
    assert isinstance(error, TorchrunError) and error.refused
    assert str(error) == "training refused: pretrain config field 'lr': must be > 0, got 0"
    assert json.loads((tmp_path / "c.json").read_text()) == config
    with get_client(sync_client=True) as client:
        assert client.read_task_run(task_run_id).run_count == 1  # not retried
    assert any("field 'lr'" in r.getMessage() for r in caplog.records)  # the worker's log, streamed
