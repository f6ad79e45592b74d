"""A node other than node 0 of a pipeline's pretraining joins only a run node 0 claimed and has not completed."""

import json
import threading
import time

import pytest

from fineforge.flows.pipeline_node import NodeWaitTimeout, wait_for_claim
from fineforge.tasks.training.completion import claim_run_dir, training_inputs


def test_a_node_waits_for_the_claim_and_takes_node_0s_config(tmp_path):
    run_dir = tmp_path / "run"
    inputs = training_inputs({"max_steps": 3, "lr": 0.001}, "tokens-a")
    claimer = threading.Timer(1.0, claim_run_dir, (run_dir, inputs))
    claimer.start()
    started = time.monotonic()
    assert wait_for_claim(run_dir, 30) == inputs
    assert time.monotonic() - started >= 0.9  # it waited for node 0
    claimer.join()


def test_a_completed_run_is_an_earlier_run_not_one_to_join(tmp_path):
    run_dir = tmp_path / "run"
    inputs = training_inputs({"max_steps": 3}, "tokens-a")
    claim_run_dir(run_dir, inputs)
    (run_dir / "summary.json").write_text(json.dumps({"step": 3}))
    with pytest.raises(NodeWaitTimeout, match=f"node 0 did not claim the training run folder {run_dir} within 3 s"):
        wait_for_claim(run_dir, 3)
    claim_run_dir(run_dir, training_inputs({"max_steps": 5}, "tokens-a"))  # node 0 resumes it for more steps
    assert wait_for_claim(run_dir, 10)["config"]["max_steps"] == 5
