"""The torchrun launcher: command line, streamed output, a nonzero exit as an error quoting the cause."""

from __future__ import annotations

import json
import logging

import pytest

from fineforge.tasks.training.torchrun import LaunchConfig, TorchrunError, run_command, torchrun_command


def test_multi_node_arguments_replace_standalone():
    single = torchrun_command("fineforge.model.pretrain", "c.json", LaunchConfig(nproc_per_node=2))
    assert single[single.index("--standalone") + 1 : single.index("-m", 3)] == ["--nproc-per-node", "2"]
    multi = torchrun_command("fineforge.model.pretrain", "c.json", LaunchConfig(
        nproc_per_node=8, launcher_args=["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "h:29400"]))
    assert "--standalone" not in multi and multi[-4:] == ["-m", "fineforge.model.pretrain", "--config", "c.json"]
    assert multi[multi.index("--nnodes") + 1] == "2" and multi[multi.index("--nproc-per-node") + 1] == "8"


def test_failed_training_run_raises_with_its_error(tmp_path, caplog):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"data_dir": str(tmp_path), "run_dir": str(tmp_path / "run"), "lr": 0}))
    logger = logging.getLogger("test.torchrun")
    with caplog.at_level(logging.INFO, logger="test.torchrun"), pytest.raises(TorchrunError) as failure:
        run_command(torchrun_command("fineforge.model.pretrain", config, LaunchConfig(nproc_per_node=2)), logger=logger)
    assert "exited with status 1" in str(failure.value)
    assert "pretrain config field 'lr': must be > 0" in str(failure.value)  # the worker's error, quoted
    assert any("field 'lr'" in r.getMessage() for r in caplog.records)  # and streamed line by line
