"""The torchrun launcher: command line, streamed output, a nonzero exit as an error quoting the cause."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from fineforge.tasks.training.torchrun import LaunchConfig, TorchrunError, run_command, torchrun_command


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


def test_failed_training_run_raises_with_its_error(tmp_path, caplog):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"data_dir": str(tmp_path), "run_dir": str(tmp_path / "run"), "lr": 0}))
    logger = logging.getLogger("test.torchrun")
    with caplog.at_level(logging.INFO, logger="test.torchrun"), pytest.raises(TorchrunError) as failure:
        run_command(torchrun_command("fineforge.model.pretrain", config, LaunchConfig(nproc_per_node=2)), logger=logger)
    assert "exited with status 1" in str(failure.value)
    assert "pretrain config field 'lr': must be > 0" in str(failure.value)  # the worker's error, quoted
    assert any("field 'lr'" in r.getMessage() for r in caplog.records)  # and streamed line by line
