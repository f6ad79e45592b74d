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


def test_multi_node_fields_replace_standalone():
    single = torchrun_command("fineforge.model.pretrain", "c.json", LaunchConfig(nproc_per_node=2))
    assert single[single.index("--standalone") + 1 : single.index("-m", 3)] == ["--nproc-per-node", "2"]
    launch = LaunchConfig(nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="h:29400", rdzv_id="run7",
                          launcher_args=["--max-restarts", "3"])  # fmt: skip
    multi = torchrun_command("fineforge.model.pretrain", "c.json", launch)
    assert "--standalone" not in multi and multi[-4:] == ["-m", "fineforge.model.pretrain", "--config", "c.json"]
    flags = dict(zip(multi[3:-4:2], multi[4:-4:2], strict=True))
    assert flags == {"--nnodes": "2", "--node-rank": "1", "--rdzv-backend": "c10d", "--rdzv-endpoint": "h:29400",
                     "--rdzv-id": "run7", "--nproc-per-node": "8", "--max-restarts": "3"}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"nnodes": 2}, "rdzv_endpoint", "required when nnodes > 1"),
        ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"}, "node_rank", "below nnodes"),
        ({"rdzv_endpoint": "h"}, "rdzv_endpoint", "host:port"),
        ({"launcher_args": ["--nnodes=2"]}, "launcher_args", "--nnodes is set by the fields"),
        ({"launcher_args": ["--node_rank", "1"]}, "launcher_args", "--node-rank is set by the fields"),
        ({"nnodes": 2, "rdzv_endpoint": "h:1", "rdzv_backend": "etcd"}, "rdzv_backend", "c10d"),
    ],
)
def test_wrong_node_layout_fails_naming_the_field(fields, field, message):
    with pytest.raises(ValidationError) as failure:
        LaunchConfig(**fields)
    error = failure.value.errors()[0]
    assert error["loc"] == (field,) and message in str(failure.value)


def test_world_size_counts_every_node():
    assert LaunchConfig(nproc_per_node=3).world_size == 3
    assert LaunchConfig(nproc_per_node=4, nnodes=2, node_rank=1, rdzv_endpoint="h:1").world_size == 8


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
